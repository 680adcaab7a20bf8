"""Asking every shard one query at once and merging their answers within one deadline.

Also the shard positions a query waits for (``after=``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

from actors import CommandResult
from cluster._merge import Merger, shard_query
from cluster._ray import ShardHandle
from domain.errors import ConsistencyTimeout, InvalidQuery
from views.orders import GetCustomerOrders, SearchOrders

__all__ = ["is_int", "positions_of", "scatter_gather"]

_AFTER_ALLOWED: Final = "None, a CommandResult, or a {shard: position} mapping like heads()"


def scatter_gather(
    handles: Sequence[ShardHandle],
    query: Any,
    merge: Merger,
    *,
    wanted: Mapping[int, int],
    timeout: float,
    shard_wait: float,
) -> Any:
    """Ask every shard ``query`` at once; merge their answers with ``merge``.

    Args:
        handles: Every shard.
        query: The query (a page is asked as each shard's first ``page * page_size`` items,
            stats with every product: see ``cluster._merge``).
        merge: Merges the answers, in shard order.
        wanted: Per shard, the position to wait for (shards left out are not waited for).
        timeout: Seconds for the whole query.
        shard_wait: Seconds a shard may wait for its position (the rest is the hop).

    Raises:
        ConsistencyTimeout: A shard did not reach its position in time; ``.stale_result`` is
            the merged answer as of now (the other fields: those of the first such shard).
        ShardUnavailable: A shard did not answer in time.
    """
    deadline = time.monotonic() + timeout
    if isinstance(query, GetCustomerOrders | SearchOrders):
        k = query.page * query.page_size
        refs = [
            (h, h.call("query_top", query, k, wanted.get(h.index), shard_wait)) for h in handles
        ]
    else:
        asked = shard_query(query)
        refs = [(h, h.call("query", asked, wanted.get(h.index), shard_wait)) for h in handles]
    answers: list[Any] = []
    stale: list[ConsistencyTimeout] = []
    for handle, ref in refs:
        try:
            answers.append(handle.get(ref, deadline - time.monotonic(), shown=timeout))
        except ConsistencyTimeout as error:
            stale.append(error)
            answers.append(error.stale_result)
    merged = merge(query, answers)
    if stale:
        first = stale[0]
        raise ConsistencyTimeout(first.view, first.wanted, first.reached, merged)
    return merged


def is_int(value: object) -> bool:
    """Whether ``value`` is an int and not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def positions_of(after: Any, shards: int) -> dict[int, int]:
    """The position each shard must reach for ``after`` (None, a result, or a mapping).

    Raises:
        InvalidQuery: ``after`` is none of those, or names a shard that does not exist.
    """
    if after is None:
        return {}
    if isinstance(after, CommandResult):
        return {after.shard: after.position}
    if isinstance(after, Mapping):
        positions: dict[int, int] = {}
        for shard, position in after.items():
            if not is_int(shard) or not 0 <= shard < shards or not is_int(position):
                raise InvalidQuery("after", dict(after), _AFTER_ALLOWED)
            positions[shard] = position
        return positions
    raise InvalidQuery("after", after, _AFTER_ALLOWED)
