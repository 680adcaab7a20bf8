"""The narrow, typed seam between the sharded engine and Ray.

Ray's own annotations are partial (actor handles and their methods are dynamic), so everything
that touches Ray goes through here: connecting, starting shard actors, waiting for answers with
a deadline, and turning Ray's failures into :class:`~domain.errors.ShardUnavailable`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import ray
import ray.exceptions

from cluster._shard import CONCURRENCY_GROUPS, Failure, Shard
from domain.errors import ShardUnavailable

__all__ = [
    "ShardHandle",
    "checked_resources",
    "connect",
    "disconnect",
    "failure_of",
    "unwrap",
    "wait_all",
]


# One Ray actor class for every shard: a process each, restarted for ever after a crash. A call
# in flight when the process dies is not retried (max_task_retries=0): its caller gets
# ShardUnavailable and re-sends commands with the same command_id.
# Ray's stub of `ray.remote(**options)` lacks `concurrency_groups`, which `.options()` refuses.
_remote_with_options = cast("Any", ray.remote)
_SHARD_CLASS: Final[Any] = _remote_with_options(
    max_restarts=-1, max_task_retries=0, concurrency_groups=CONCURRENCY_GROUPS
)(Shard)


def connect(address: str | None) -> bool:
    """Join the Ray cluster at ``address``, or the one this process has, or start a local one.

    Returns:
        True if this call started a local Ray instance (to be stopped by :func:`disconnect`).
    """
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, include_dashboard=False)
        return False
    ray.init(
        address="local",
        num_cpus=max(2, os.cpu_count() or 2),
        include_dashboard=False,
        log_to_driver=False,
    )
    return True


def disconnect() -> None:
    """Stop the Ray instance this process started."""
    ray.shutdown()


class ShardHandle:
    """A typed handle on one shard actor.

    Args:
        index: The shard's index.
        path: Its data directory.
        durability: ``"sync"`` or ``"async"``.
        options: Its ``Engine.open`` options.
        num_cpus: CPUs Ray reserves for it (0: place it anywhere; shards are mostly I/O bound).
        resources: Custom resources it needs (pins it to the nodes that have them).
    """

    def __init__(
        self,
        index: int,
        path: str,
        durability: str,
        options: dict[str, Any],
        *,
        num_cpus: float,
        resources: dict[str, float],
    ) -> None:
        self.index = index
        actor_class = _SHARD_CLASS.options(num_cpus=num_cpus, resources=resources)
        self._actor: Any = actor_class.remote(index, path, durability, options)

    def call(self, method: str, *args: Any) -> ray.ObjectRef[Any]:
        """Call ``method`` of the shard without waiting; the reference resolves to its answer."""
        return cast("ray.ObjectRef[Any]", getattr(self._actor, method).remote(*args))

    def get(self, ref: ray.ObjectRef[Any], timeout: float, shown: float | None = None) -> Any:
        """Wait for ``ref`` up to ``timeout``; a ``Failure`` is raised as its error.

        Args:
            ref: A reference :meth:`call` returned.
            timeout: Seconds to wait.
            shown: The timeout to name in the error (default: ``timeout``).

        Raises:
            ShardUnavailable: The shard's process died, or no answer came within ``timeout``.
            EngineError: The shard answered with this error.
        """
        return unwrap(_get(self.index, ref, timeout, timeout if shown is None else shown))

    def kill(self) -> None:
        """Kill the shard's process for good (no restart)."""
        ray.kill(self._actor, no_restart=True)


def _get(index: int, ref: ray.ObjectRef[Any], timeout: float, shown: float) -> Any:
    try:
        return ray.get(ref, timeout=max(timeout, 0.0))
    except ray.exceptions.GetTimeoutError:
        raise ShardUnavailable(
            index, f"no answer within {shown:g} s: down, restarting or overloaded"
        ) from None
    except ray.exceptions.RayError as error:
        raise failure_of(index, error) from None


def unwrap(answer: Any) -> Any:
    """Raise a shard's ``Failure`` as its error; return any other answer as it is."""
    if isinstance(answer, Failure):
        raise answer.error
    return answer


def failure_of(index: int, error: BaseException) -> ShardUnavailable:
    """Turn an error Ray gave for a call to shard ``index`` into ``ShardUnavailable``."""
    if isinstance(error, ray.exceptions.RayActorError):
        return ShardUnavailable(index, f"its process died or restarted: {_first_line(error)}")
    return ShardUnavailable(index, f"Ray failed the call: {_first_line(error)}")


def wait_all(
    handles: Sequence[ShardHandle], method: str, *args: Any, timeout: float
) -> dict[int, Any]:
    """Call ``method`` on every shard at once; return each answer by shard, within ``timeout``.

    Raises:
        ShardUnavailable: A shard did not answer (the first such shard by index).
        EngineError: A shard answered with an error.
    """
    deadline = time.monotonic() + timeout
    refs = [(handle, handle.call(method, *args)) for handle in handles]
    return {
        handle.index: handle.get(ref, deadline - time.monotonic(), shown=timeout)
        for handle, ref in refs
    }


def checked_resources(
    resources: Mapping[int, Mapping[str, float]] | None, shards: int
) -> dict[int, dict[str, float]]:
    """Check ``ShardedEngine.open``'s ``shard_resources`` against the shard count.

    Raises:
        ValueError: A shard index out of range, or an amount that is not a number > 0.
    """
    checked: dict[int, dict[str, float]] = {}
    for shard, needs in (resources or {}).items():
        if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards:
            raise ValueError(f"shard_resources names shard {shard!r}: shards are 0 to {shards - 1}")
        if not all(isinstance(name, str) and _is_amount(amount) for name, amount in needs.items()):
            raise ValueError(
                f"shard_resources[{shard}] must map resource names to amounts > 0, not {needs!r}"
            )
        checked[shard] = dict(needs)
    return checked


def _is_amount(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
