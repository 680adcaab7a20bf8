"""The owners of each id text of the search index: the orders whose ids casefold to it.

One text's owners are kept in the smallest shape that holds them, since there is one per text
(164k texts at 100k orders) and together they were a third of the search view's memory:

- no owner: :data:`NO_OWNER` (one shared empty frozenset);
- one owner: the order id itself (every order id's own text, most customers': 137k of the 164k
  texts; an empty set alone is 216 bytes);
- up to :data:`LIST_MAX` owners: a list of the ids (8 bytes an owner; a set takes ~60, which
  made the 500 product texts' sets 656 bytes an order at 100k orders). A removal scans it, so
  the size is capped (~0.2 ms at the cap) and only item removals pay it;
- more: a set.

An order is never added to a text it already owns (the callers add only the texts an order
gains), so a list holds no duplicates and :func:`drop_owner` removes the one entry.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Final, TypeAlias

__all__ = [
    "LIST_MAX",
    "NO_OWNER",
    "Owners",
    "add_owner",
    "drop_owner",
    "owner_count",
    "owner_sets",
    "union",
]

Owners: TypeAlias = str | list[str] | set[str] | frozenset[str]
"""A text's owners: one order id, a list or a set of them, or :data:`NO_OWNER`."""
NO_OWNER: Final[frozenset[str]] = frozenset()
"""The owners of a text no order has (shared: never written to)."""
LIST_MAX: Final = 1 << 15
"""The most owners a text keeps in a list; past it, a set."""


def add_owner(owners: list[Owners], number: int, order_id: str) -> None:
    """Add ``order_id``, which does not own it yet, to the owners of text ``number``."""
    held = owners[number]
    if type(held) is list:
        if len(held) < LIST_MAX:
            held.append(order_id)
        else:
            owners[number] = {*held, order_id}
    elif type(held) is str:
        if held != order_id:
            owners[number] = [held, order_id]
    elif type(held) is set:
        held.add(order_id)
    else:
        owners[number] = order_id  # the first owner: the id itself


def drop_owner(owners: list[Owners], number: int, order_id: str) -> None:
    """Remove ``order_id`` from the owners of text ``number`` (if it is one)."""
    held = owners[number]
    if type(held) is list:
        with contextlib.suppress(ValueError):  # not an owner: nothing to remove
            held.remove(order_id)
    elif type(held) is set:
        held.discard(order_id)
    elif held == order_id:
        owners[number] = NO_OWNER


def owner_count(held: Owners) -> int:
    """Return how many orders ``held`` names."""
    return 1 if type(held) is str else len(held)


def union(owners: list[Owners], numbers: Iterable[int]) -> set[str]:
    """Return every order owning one of the texts ``numbers``, as a new set."""
    hits: set[str] = set()
    add, update = hits.add, hits.update
    for number in numbers:
        held = owners[number]
        if type(held) is str:
            add(held)
        else:
            update(held)
    return hits


def owner_sets(owners: list[Owners]) -> list[set[str]]:
    """Return ``owners`` as one set per text (to compare two owner lists)."""
    return [{held} if type(held) is str else set(held) for held in owners]
