"""Merging stats is exact: the shards' figures merged equal one engine's, past 10 products.

The property runs real engines without Ray: one plain engine, and one engine per shard fed the
commands `shard_for` routes to it, as `ShardedEngine` does; each shard is asked what
`ShardedEngine` asks it (`shard_query`), and the answers merged with `merge_stats`.
"""

import contextlib
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import Engine
from cluster import shard_for
from cluster._merge import merge_stats, shard_query
from domain.errors import EngineError, InvalidQuery
from domain.orders import (
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)
from views.orders import GetOrderStats, OrderStats

ADDRESS = Address(street="1 Main St", city="Berlin", postal_code="10115", country="DE")

# (kind, order, product, quantity): mostly creates and adds, over few orders and many products,
# so that orders change often and far more than 10 products sell, with close unit counts.
ACTIONS = st.tuples(
    st.sampled_from([0, 0, 1, 1, 1, 2, 3, 4]),
    st.integers(0, 24),
    st.integers(0, 29),
    st.integers(1, 4),
)


def _command(kind: int, order: int, product: int, quantity: int) -> Any:
    order_id, product_id = f"o-{order}", f"p-{product:02d}"
    price = Decimal(product + 1)  # one price per product: an add never mismatches
    if kind == 0:
        return CreateOrder(
            order_id=order_id,
            customer_id="c",
            items=[OrderItem(product_id=product_id, quantity=quantity, price=price)],
            shipping_address=ADDRESS,
        )
    if kind == 1:
        return AddOrderItem(
            order_id=order_id, product_id=product_id, quantity=quantity, price=price
        )
    if kind == 2:
        return RemoveOrderItem(order_id=order_id, product_id=product_id)
    if kind == 3:
        return ShipOrder(order_id=order_id)
    return CancelOrder(order_id=order_id, reason="changed my mind")


def _run(engine: Engine, command: Any) -> None:
    # A rejection happens alike everywhere: each order's state is the same.
    with contextlib.suppress(EngineError):
        engine.execute(command)


def _stats(engine: Engine, query: object) -> Any:
    assert engine.wait_for_views()
    return engine.query(query)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(ACTIONS, min_size=1, max_size=150),
    shards=st.integers(2, 4),
    top=st.sampled_from([10, 10, 3, 25, None]),
)
def test_merged_stats_equal_one_engines_for_any_commands(
    actions: list[tuple[int, int, int, int]], shards: int, top: int | None
) -> None:
    query = GetOrderStats(top=top)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        with Engine.open(root / "plain", durability="async") as plain:
            parts = [Engine.open(root / f"s{i}", durability="async") for i in range(shards)]
            try:
                for action in actions:
                    command = _command(*action)
                    _run(plain, command)
                    _run(parts[shard_for(command.order_id, shards)], command)
                expected = _stats(plain, query)
                merged = merge_stats(query, [_stats(p, shard_query(query)) for p in parts])
            finally:
                for part in parts:
                    part.close()
    assert merged == expected


def test_a_product_outside_every_shards_top_10_is_first_when_merged(tmp_path: Path) -> None:
    # Each shard sells 10 products of its own, 6 units each, and "star" 5 units: no shard's
    # top 10 holds "star", yet with 10 units it leads over all. A merge of each shard's top 10
    # (as it was) would leave it out; the exact merge ranks it first.
    shards = 2
    ids = (f"o-{i}" for i in range(1000))
    by_shard: dict[int, list[str]] = {0: [], 1: []}
    while min(len(found) for found in by_shard.values()) < 11:
        order_id = next(ids)
        by_shard[shard_for(order_id, shards)].append(order_id)
    parts = [Engine.open(tmp_path / f"s{i}", durability="async") for i in range(shards)]
    try:
        for shard, order_ids in by_shard.items():
            sales = [(f"s{shard}-p{j}", 6) for j in range(10)] + [("star", 5)]
            for order_id, (product_id, units) in zip(order_ids, sales, strict=False):
                parts[shard].execute(
                    CreateOrder(
                        order_id=order_id,
                        customer_id="c",
                        items=[OrderItem(product_id=product_id, quantity=units, price=Decimal(1))],
                        shipping_address=ADDRESS,
                    )
                )
        shard_tops = [_stats(p, GetOrderStats()) for p in parts]
        assert all("star" not in dict(answer.top_products) for answer in shard_tops)
        merged: OrderStats = merge_stats(
            GetOrderStats(), [_stats(p, shard_query(GetOrderStats())) for p in parts]
        )
    finally:
        for part in parts:
            part.close()
    assert merged.top_products[0] == ("star", 10)
    assert len(merged.top_products) == 10


@pytest.mark.parametrize("top", [0, -1, True, 2.5, "3"])
def test_a_bad_top_is_an_invalid_query(tmp_path: Path, top: Any) -> None:
    with Engine.open(tmp_path, durability="async") as engine, pytest.raises(InvalidQuery) as caught:
        engine.query(GetOrderStats(top=top))
    assert caught.value.field == "top"
