"""The order workload every benchmark runs: deterministic, seeded, built from domain commands.

Per order: one ``CreateOrder`` (1-3 distinct initial items), ``adds_per_order`` ``AddOrderItem``
commands, then a ``ShipOrder`` (even order index) or a ``CancelOrder`` (odd index). With the
default 18 adds, 1,000 orders make 1,000 creates, 18,000 add-items and 1,000 ships/cancels:
20,000 commands, each accepted, each yielding exactly one event.

Each product id has exactly one price (:func:`price_of`), so adding a product that is already in
the order never breaks the same-price rule. Order ids and command ids are derived from the seed,
so two calls with the same arguments return equal command lists. They are time-ordered
(version 7) like the engine's default ids (``domain.ids.new_id``). :func:`order_workload` issues
command ids in the order the commands are sent, as a client making each command when it sends
it gets them from ``new_id`` (ids in script order, then interleaved, would make most ids of a
round-robin workload older than the newest one recorded: no client sends that way). For the same
reason a benchmark that sends several workloads to one engine starts each one's ids later
(``start_ms``), as time moves on between them: ids that went back in time at every workload would
land amid every earlier one's keys, a random-insert load of the idempotency table, the heads and
the stream index that the engine's own ids never make.

Two orderings of the same commands:

- *interleaved* (round-robin across orders: all creates, then every order's first add, ...):
  every order is live at once, as when the engine benchmark keeps the whole workload in flight;
- *sequential*: all of one order's commands, then the next order's.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Final

import msgspec

from domain.orders import (
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderCommand,
    OrderItem,
    ShipOrder,
)

__all__ = [
    "ADDS_PER_ORDER",
    "PRODUCTS",
    "SEED",
    "ids_in_sending_order",
    "order_scripts",
    "order_waves",
    "order_workload",
    "price_of",
    "product_id",
    "round_robin",
    "workload_mix",
]

ADDS_PER_ORDER: Final = 18
"""Adds per order: 1 create + 18 adds + 1 ship/cancel = 20 commands (and events) per order."""
SEED: Final = 7
PRODUCTS: Final = 500
"""Size of the product catalogue the items are drawn from."""
MAX_QUANTITY: Final = 5

_CITIES: Final = ("Lyon", "Porto", "Leipzig", "Gdansk", "Turin", "Ghent", "Aarhus", "Brno")
_COUNTRIES: Final = ("FR", "PT", "DE", "PL", "IT", "BE", "DK", "CZ")
_STREETS: Final = ("Rue Centrale", "Rua Nova", "Hauptstrasse", "Dluga", "Via Roma", "Veldstraat")
_REASONS: Final = ("customer request", "payment failed", "out of stock", "duplicate order")


def product_id(index: int) -> str:
    """Return the id of product number ``index`` of the catalogue."""
    return f"sku-{index:05d}"


def price_of(product: str) -> Decimal:
    """Return the one price of ``product`` (exact, two decimals, 1.00-99.99), from its id alone."""
    cents = 100 + (sum(ord(ch) * (i + 1) for i, ch in enumerate(product)) * 7919) % 9900
    return Decimal(cents).scaleb(-2)


_EPOCH_MS: Final = 1_767_225_600_000  # 2026-01-01 UTC: the time part of the workload's ids


class _Ids:
    """Time-ordered (version 7) ids like the engine's default ``new_id``, but reproducible.

    Made in construction order, as a program building its commands with the default ids gets
    them: each id's time part is one "tick" after the previous one, its random part comes
    from the workload's seeded generator.
    """

    def __init__(self, rng: random.Random, start_ms: int = 0) -> None:
        self._rng = rng
        self._tick = start_ms * 4096

    def __call__(self) -> str:
        self._tick += 1
        millis, sub_millis = divmod(self._tick, 4096)
        value = (
            (_EPOCH_MS + millis) << 80
            | 0x7 << 76
            | sub_millis << 64
            | 0b10 << 62
            | self._rng.getrandbits(62)
        )
        return str(uuid.UUID(int=value))


def _item(rng: random.Random, product: str) -> OrderItem:
    return OrderItem(
        product_id=product, quantity=rng.randint(1, MAX_QUANTITY), price=price_of(product)
    )


def _script(rng: random.Random, ids: _Ids, index: int, adds_per_order: int) -> list[OrderCommand]:
    """Return one order's commands: create, ``adds_per_order`` adds, then ship or cancel."""
    order_id = ids()
    initial = rng.sample(range(PRODUCTS), rng.randint(1, 3))
    city = rng.randrange(len(_CITIES))
    script: list[OrderCommand] = [
        CreateOrder(
            customer_id=f"customer-{rng.randrange(100_000):06d}",
            items=[_item(rng, product_id(p)) for p in initial],
            shipping_address=Address(
                street=f"{rng.randint(1, 200)} {rng.choice(_STREETS)}",
                city=_CITIES[city],
                postal_code=f"{rng.randrange(10_000, 99_999)}",
                country=_COUNTRIES[city],
            ),
            order_id=order_id,
            command_id=ids(),
        )
    ]
    for _ in range(adds_per_order):
        product = product_id(rng.randrange(PRODUCTS))
        script.append(
            AddOrderItem(
                order_id=order_id,
                product_id=product,
                quantity=rng.randint(1, MAX_QUANTITY),
                price=price_of(product),
                command_id=ids(),
            )
        )
    if index % 2 == 0:
        script.append(ShipOrder(order_id=order_id, command_id=ids()))
    else:
        script.append(CancelOrder(order_id=order_id, reason=rng.choice(_REASONS), command_id=ids()))
    return script


def order_scripts(
    orders: int, adds_per_order: int = ADDS_PER_ORDER, seed: int = SEED, start_ms: int = 0
) -> list[list[OrderCommand]]:
    """Return each order's commands, in order: ``orders`` lists of ``adds_per_order + 2``.

    ``start_ms`` is where the ids' time part starts, in milliseconds after the workload's epoch.

    Raises:
        ValueError: ``orders`` or ``adds_per_order`` is negative.
    """
    if orders < 0 or adds_per_order < 0:
        raise ValueError(f"orders ({orders}) and adds_per_order ({adds_per_order}) must be >= 0")
    rng = random.Random(seed)
    ids = _Ids(rng, start_ms)
    return [_script(rng, ids, index, adds_per_order) for index in range(orders)]


def round_robin(scripts: Sequence[Sequence[OrderCommand]]) -> Iterator[OrderCommand]:
    """Yield the first command of every script, then every second one, and so on."""
    longest = max((len(script) for script in scripts), default=0)
    for step in range(longest):
        for script in scripts:
            if step < len(script):
                yield script[step]


def order_workload(
    orders: int,
    adds_per_order: int = ADDS_PER_ORDER,
    seed: int = SEED,
    interleave: bool = True,
    start_ms: int = 0,
) -> list[OrderCommand]:
    """Return the whole workload: ``orders * (adds_per_order + 2)`` commands.

    Args:
        orders: Number of orders (aggregates).
        adds_per_order: ``AddOrderItem`` commands per order, between create and ship/cancel.
        seed: Seed of the generator; equal arguments give equal commands.
        interleave: Round-robin across orders (every order live at once) when true, otherwise
            each order's commands back to back.
        start_ms: Where the ids' time part starts, in milliseconds after the workload's epoch:
            a later workload sent to the same engine starts later (see the module). A workload
            uses ~0.3 us of it per command (4,096 ids a millisecond).
    """
    scripts = order_scripts(orders, adds_per_order, seed, start_ms)
    if interleave:
        ordered = list(round_robin(scripts))
    else:
        ordered = [command for script in scripts for command in script]
    return ids_in_sending_order(ordered, seed, start_ms)


def order_waves(
    waves: int | None, orders: int, adds_per_order: int = ADDS_PER_ORDER, first: int = 0
) -> Iterator[OrderCommand]:
    """Yield successive workloads of ``orders`` orders each, as one engine gets them over time.

    Wave ``n`` (from ``first``) is :func:`order_workload` with seed ``1000 + n`` (fresh orders)
    and its ids a second of the ids' clock after wave ``n - 1``'s (a wave takes ~0.3 us of it per
    command), so that every wave's ids come after every earlier wave's, as a client's ``new_id``
    makes them (see the module). One wave's commands are built at a time.

    Args:
        waves: How many waves (None: without end).
        orders: Orders per wave, interleaved within it.
        adds_per_order: As for :func:`order_workload`.
        first: The first wave's number: a later one starts later (after a log built at 0).
    """
    numbers = itertools.count(first) if waves is None else range(first, first + waves)
    for number in numbers:
        yield from order_workload(
            orders, adds_per_order, seed=1000 + number, start_ms=number * 1000
        )


def ids_in_sending_order(
    commands: Sequence[OrderCommand], seed: int = SEED, start_ms: int = 0
) -> list[OrderCommand]:
    """Return ``commands`` with fresh time-ordered command ids in their order (see the module).

    Order ids stay as made; equal arguments give equal ids. ``start_ms`` as for
    :func:`order_workload`.
    """
    ids = _Ids(random.Random(seed + 1), start_ms)
    return [msgspec.structs.replace(command, command_id=ids()) for command in commands]


def workload_mix(commands: Sequence[OrderCommand]) -> dict[str, int]:
    """Return how many commands of each type ``commands`` holds, by class name."""
    mix: dict[str, int] = {}
    for command in commands:
        name = type(command).__name__
        mix[name] = mix.get(name, 0) + 1
    return mix
