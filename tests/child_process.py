"""A child Python process whose stdout lines the test reads with deadlines.

One reader thread turns the blocking pipe into a queue, so every wait has a timeout and a
child that stalls fails the test with a message instead of hanging it. Shared by the crash
tests (``reliability_kit.Child``, the saga's kill -9 test).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = ["REPO", "ChildProcess"]

REPO = Path(__file__).resolve().parents[1]


class ChildProcess:
    """``python script *args`` run from the repository; its stdout lines read with deadlines.

    Always used as a context manager: the child is killed and reaped on the way out.

    Args:
        script: The child's script.
        args: Its arguments.
        stderr: Where its stderr goes (its log): discarded unless a file is given.
    """

    def __init__(
        self, script: Path, *args: str, stderr: IO[Any] | int = subprocess.DEVNULL
    ) -> None:
        # The repository for the engine, tests/ for the kits a child imports (as pytest's
        # pythonpath gives them to the tests themselves).
        path = os.pathsep.join((str(REPO), str(REPO / "tests")))
        env = dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(  # noqa: S603 - our own script with our own arguments
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO,
            env=env,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name=f"child-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        # The pipe may be closed under us by __exit__ when a grandchild still holds its write
        # end (the reader then never sees EOF by itself): that ends the reading, not an error.
        with contextlib.suppress(ValueError, OSError):
            for line in stdout:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def line(self, timeout: float = 30.0) -> str:
        """Return the next stdout line; fails the test on EOF or after ``timeout`` seconds."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"child {self.pid} printed nothing for {timeout} s") from None
        if line is None:
            raise AssertionError(f"child {self.pid} exited ({self.proc.poll()}) early")
        return line

    def expect(self, prefix: str, timeout: float = 30.0) -> list[str]:
        """Skip lines until one starting with ``prefix``; return its fields after the prefix."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(0.01, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line.split()[1:]
            assert not line.startswith("ERR"), line

    def send(self, text: str) -> None:
        """Write one line to the child's stdin."""
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(text + "\n")
        stdin.flush()

    def kill(self) -> None:
        """SIGKILL the child and reap it."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the child to exit by itself; return its exit code."""
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.kill()
        finally:
            # The reader first drains what the dead child left in the pipe and sees EOF; closing
            # stdout while it still iterates made it raise "I/O operation on closed file".
            self._reader.join(timeout=10)
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(BrokenPipeError):  # the child is dead already
                        pipe.close()
            self._reader.join(timeout=30)
