"""``python -m actors._projection_main FD``: a projection process's entry point.

Kept apart from :mod:`actors._projection_child` so that running it as ``__main__`` never imports
a second copy of the module the engine's package already imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection

from actors._projection_child import main

__all__ = ["entry"]


def entry(argv: Sequence[str]) -> int:
    """Read what to do from the socket ``argv[1]`` (the engine sends it first), then run."""
    conn = Connection(int(argv[1]))
    try:
        spec = conn.recv()
    except EOFError:
        return 1  # the engine went away before it said what to do
    main(conn, spec)
    return 0


if __name__ == "__main__":
    sys.exit(entry(sys.argv))
