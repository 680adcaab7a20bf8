"""The id texts of the search index: numbered once, their trigram postings, and their owners.

Every distinct casefolded id (order, customer, product) gets a number when first seen; texts
are never forgotten (append-only), only their *owners* change: the set of orders having an id
that casefolds to that text. For every 3-character substring of a text, a posting holds the
numbers of the texts containing it (``array('I')``, ascending: texts are numbered in order). A
needle of 3 characters is answered exactly by its posting; a longer one by the smallest posting
of its trigrams, each candidate text verified with ``in``; a shorter one by a scan of the texts,
kept per needle and extended over the texts numbered since (:meth:`IdTexts.matching`). Texts are
shared by many orders (500 products, ~60k customers for 100k orders), so this indexes ~160k
strings, not every row.

Why trigrams only: 1- and 2-character postings were two thirds of the index's work and bytes
(a new order id, a 36-character uuid, made 105 posting appends, now 34; over 100k order ids and
45k customer ids, 15.7 -> 5.8 us per new text and postings 40 -> 16 MB), paid for every new id,
while a needle that short is rare and mostly matches nearly every text, where the search scans
the rows anyway.
Its first search scans the texts (4-8 ms at 145k texts, under the view's lock), the next ones
only the texts numbered since.

Each text's owners are kept in the smallest shape that holds them (:mod:`views._search_owners`).

Owners are purely a function of the rows, so a restored index starts without them
(``owners is None``) and builds them later, on the query path or off the lock
(:meth:`IdTexts.begin_owners`, :func:`build_owners`, :meth:`IdTexts.install_owners`): building
them is most of a restore's time (~1M set inserts at 1M events).

Single-threaded, like :class:`~views._search_index.SearchIndex`, which owns one and locks for it.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from typing import Final

from views._order_rows import OrderRow, texts_of
from views._search_owners import NO_OWNER, Owners, add_owner, drop_owner
from views._search_postings import TYPECODE as _TYPECODE

__all__ = ["GRAM", "SHORT_NEEDLES", "IdTexts", "build_owners"]

GRAM: Final = 3
"""The length of the indexed substrings: longer needles are verified candidates, shorter ones
scanned for."""
SHORT_NEEDLES: Final = 1024
"""Short needles whose matching texts are kept (the least recently asked is dropped first)."""


class IdTexts:
    """The numbered id texts of the rows, their n-gram postings and (when built) their owners.

    Args:
        texts: The texts, in number order (a snapshot's); empty for a new index.
        grams: Their postings (a snapshot's); empty for a new index. Postings of other
            lengths (1 and 2, kept by snapshots of read-model version 3) are dropped.
        owners_built: False for a restored index: its owners are built when needed.
    """

    __slots__ = ("grams", "numbers", "owners", "short", "texts", "tracking")

    def __init__(
        self,
        texts: list[str] | None = None,
        grams: dict[str, array[int]] | None = None,
        *,
        owners_built: bool = True,
    ) -> None:
        self.texts: list[str] = [] if texts is None else texts
        self.numbers: dict[str, int] = {text: number for number, text in enumerate(self.texts)}
        self.grams: dict[str, array[int]] = (
            {} if grams is None else {g: p for g, p in grams.items() if len(g) == GRAM}
        )
        # Per short needle: (how many texts were scanned, the numbers of those containing it).
        self.short: dict[str, tuple[int, array[int]]] = {}
        # Per text, the orders whose ids contain it; None until built (a restored index).
        self.owners: list[Owners] | None = [NO_OWNER] * len(self.texts) if owners_built else None
        # While owners are built off the lock (begin_owners/install_owners): orders folded
        # since the rows were copied, reconciled at install.
        self.tracking: set[str] | None = None

    def index_row(self, order_id: str, old: OrderRow | None, new: OrderRow) -> None:
        """Register ``new``'s texts and keep the owners of each text in step with the rows."""
        owners = self.owners
        if old is not None and new.haystack is old.haystack:
            return  # the ids did not change (the model carries the text over)
        if owners is None:
            if self.tracking is not None:
                self.tracking.add(order_id)
            for text in texts_of(new):
                self.number(text)  # the texts and grams stay complete meanwhile
        elif old is None:
            customer_id = new.customer_id
            for text in texts_of(new):
                # A text equal to the row's own id string is registered as that string: the
                # texts then hold no second copy of each order id (nor of most customer ids).
                same = order_id if text == order_id else customer_id
                add_owner(owners, self.number(same if text == same else text), order_id)
        else:
            self._reindex(owners, order_id, old, new)

    def _reindex(self, owners: list[Owners], order_id: str, old: OrderRow, new: OrderRow) -> None:
        """Move the owners of an order's texts from ``old``'s to ``new``'s."""
        if len(new.lines) == len(old.lines) + 1 and new.haystack.startswith(old.haystack):
            # A new product line, appended last (the common case): one text gained, unless the
            # new id casefolds to one the order has (a product "SKU-1" beside "sku-1").
            text = new.haystack[len(old.haystack) + 1 :]
            number = self.number(text)
            if text not in old.haystack or text not in texts_of(old):
                add_owner(owners, number, order_id)
            return
        before, after = texts_of(old), texts_of(new)
        for text in after - before:
            add_owner(owners, self.number(text), order_id)
        for text in before - after:
            drop_owner(owners, self.numbers[text], order_id)

    def number(self, text: str) -> int:
        """Return ``text``'s number, registering it (and its grams) if it is new."""
        number = self.numbers.get(text)
        if number is None:
            number = self.numbers[text] = len(self.texts)
            self.texts.append(text)
            if self.owners is not None:
                self.owners.append(NO_OWNER)
            grams = self.grams
            for gram in {text[i : i + GRAM] for i in range(len(text) - GRAM + 1)}:
                posting = grams.get(gram)
                if posting is None:
                    grams[gram] = array(_TYPECODE, (number,))
                else:
                    posting.append(number)
        return number

    def matching(self, needle: str) -> list[int]:
        """Return the numbers of the texts that contain ``needle`` (casefolded, non-empty)."""
        if len(needle) < GRAM:
            return self._scanned(needle)
        grams = self.grams
        if len(needle) == GRAM:
            return list(grams.get(needle, ()))
        postings = []
        for i in range(len(needle) - GRAM + 1):
            posting = grams.get(needle[i : i + GRAM])
            if posting is None:
                return []
            postings.append(posting)
        texts = self.texts
        return [number for number in min(postings, key=len) if needle in texts[number]]

    def _scanned(self, needle: str) -> list[int]:
        """Return the numbers of the texts containing a needle shorter than :data:`GRAM`.

        The texts are append-only, so a needle's matches stay valid: only the texts numbered
        since its last search are scanned.
        """
        texts = self.texts
        kept = self.short.pop(needle, None)
        seen, found = (0, array(_TYPECODE)) if kept is None else kept
        if seen < len(texts):
            found.extend(n for n, text in enumerate(texts[seen:], seen) if needle in text)
        self.short[needle] = (len(texts), found)  # re-inserted last: the dict's order is recency
        if len(self.short) > SHORT_NEEDLES:
            del self.short[next(iter(self.short))]
        return list(found)

    def build(self, rows: dict[str, OrderRow]) -> list[Owners]:
        """Build the owners from ``rows`` now (on the caller's thread) and keep them."""
        owners = build_owners(list(rows.items()), self.numbers, len(self.texts))
        self.owners = owners
        self.tracking = None
        return owners

    def begin_owners(
        self, rows: dict[str, OrderRow]
    ) -> tuple[list[tuple[str, OrderRow]], dict[str, int], int]:
        """Start building the owners off the lock: return what :func:`build_owners` needs.

        Call under the owner's lock, then :func:`build_owners` without it, then
        :meth:`install_owners` under it again. Orders folded in between are tracked.
        """
        self.tracking = set()
        return list(rows.items()), self.numbers, len(self.texts)

    def install_owners(
        self,
        owners: list[Owners],
        copied: list[tuple[str, OrderRow]],
        rows: dict[str, OrderRow],
    ) -> None:
        """Adopt owners built from ``copied`` rows, reconciling the orders folded since."""
        if self.owners is not None or self.tracking is None:
            return  # built meanwhile on the query path, or not begun
        owners.extend([NO_OWNER] * (len(self.texts) - len(owners)))
        before = dict(copied)
        numbers = self.numbers
        for order_id in self.tracking:
            old = before.get(order_id)
            if old is not None:
                for text in texts_of(old):
                    drop_owner(owners, numbers[text], order_id)
            for text in texts_of(rows[order_id]):
                add_owner(owners, numbers[text], order_id)
        self.owners = owners
        self.tracking = None

    def export(self) -> tuple[list[str], dict[str, array[int]]]:
        """Return what a snapshot needs: a copy of the texts and the live postings.

        The postings only ever grow by appending texts numbered from ``len(texts)`` on, so
        :func:`~views._search_postings.encode_grams` cuts them back to this moment.
        """
        return self.texts[:], dict(self.grams)


def build_owners(
    rows: Iterable[tuple[str, OrderRow]], text_ids: dict[str, int], texts: int
) -> list[Owners]:
    """Return, per text number below ``texts``, the ids of the orders whose ids contain it.

    Reads ``text_ids`` only for texts of ``rows`` (registered before the rows were copied), so
    it may run while the index registers new texts under its lock.
    """
    owners: list[Owners] = [NO_OWNER] * texts
    for order_id, row in rows:
        for text in texts_of(row):
            add_owner(owners, text_ids[text], order_id)
    return owners
