import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import cluster_kit
import msgspec
import pytest
from cluster_kit import create, workload

from actors import Engine
from cluster import ShardedEngine
from domain.errors import ConsistencyTimeout, InvalidQuery
from views.orders import (
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderView,
    Page,
    SearchOrders,
)

ray_local = cluster_kit.ray_local
sharded = cluster_kit.sharded
ORDERS = 40


@pytest.fixture(scope="module")
def pair(
    ray_local: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, ShardedEngine]]:
    """A plain engine and a 3-shard engine fed the same commands, one at a time."""
    del ray_local
    root = tmp_path_factory.mktemp("pair")
    plain = Engine.open(root / "plain")
    sharded = ShardedEngine.open(root / "sharded", shards=3)
    try:
        for command in workload(ORDERS):
            plain.execute(command)
            sharded.execute(command)
        assert plain.wait_for_views()
        sharded.query(GetOrderStats(), after=sharded.heads())
        yield plain, sharded
    finally:
        sharded.close()
        plain.close()


def _row(view: OrderView) -> tuple[Any, ...]:
    # Timestamps come from each engine's own clock: everything else must be equal.
    return (view.order_id, view.customer_id, view.status, view.total_amount, view.item_count)


def _page(page: Page[OrderView]) -> tuple[Any, ...]:
    return ([_row(v) for v in page.items], page.total, page.page, page.page_size, page.total_pages)


def test_every_shard_holds_some_orders(pair: tuple[Engine, ShardedEngine]) -> None:
    _, sharded = pair
    assert all(head > 0 for head in sharded.heads().values())


def test_an_order_is_read_from_its_shard(pair: tuple[Engine, ShardedEngine]) -> None:
    plain, sharded = pair
    for i in range(ORDERS):
        query = GetOrderById(f"o-{i:03d}")
        answer = sharded.query(query)
        assert answer is not None
        assert _row(answer) == _row(plain.query(query))
    assert sharded.query(GetOrderById("missing")) is None


@pytest.mark.parametrize("status", [None, "pending", "shipped", "cancelled"])
def test_customer_pages_merge_like_one_engine(
    pair: tuple[Engine, ShardedEngine], status: str | None
) -> None:
    plain, sharded = pair
    for customer in range(7):
        for page in (1, 2, 3):
            query = GetCustomerOrders(f"c-{customer}", status=status, page=page, page_size=2)
            assert _page(sharded.query(query)) == _page(plain.query(query))


SEARCHES = [
    SearchOrders(),
    SearchOrders(page=2, page_size=7),
    SearchOrders(page=6, page_size=7),
    SearchOrders(sort_by="total_amount", sort_order="asc", page_size=9),
    SearchOrders(sort_by="total_amount", sort_order="desc", page=3, page_size=5),
    SearchOrders(sort_by="item_count", sort_order="desc", page=2, page_size=6),
    SearchOrders(sort_by="item_count", sort_order="asc", page_size=1000),
    SearchOrders(sort_by="created_at", sort_order="asc", page=4, page_size=3),
    SearchOrders(query="P-3", status="pending"),
    SearchOrders(min_total=Decimal("4.25"), max_total=Decimal(10), sort_by="total_amount"),
    SearchOrders(query="c-2", page=50),
]


@pytest.mark.parametrize("query", SEARCHES, ids=range(len(SEARCHES)))
def test_searches_merge_and_resort_like_one_engine(
    pair: tuple[Engine, ShardedEngine], query: SearchOrders
) -> None:
    plain, sharded = pair
    assert _page(sharded.query(query)) == _page(plain.query(query))


@pytest.mark.parametrize("top", [10, 3, None])
def test_stats_are_summed_over_every_shard(
    pair: tuple[Engine, ShardedEngine], top: int | None
) -> None:
    plain, sharded = pair
    query = GetOrderStats(top=top)
    assert sharded.query(query) == plain.query(query)


def test_top_products_merge_exactly_past_10_products(
    sharded: ShardedEngine, tmp_path: Path
) -> None:
    with Engine.open(tmp_path / "plain") as plain:
        for i in range(40):
            # 23 products with close unit counts: each shard's own top 10 differs from the whole.
            command = create(f"t-{i}", product=f"p-{i % 23}", price="1.00")
            command = msgspec.structs.replace(
                command, items=[msgspec.structs.replace(command.items[0], quantity=1 + i % 4)]
            )
            plain.execute(command)
            sharded.execute(command)
        assert plain.wait_for_views()
        heads = sharded.heads()
        for query in (GetOrderStats(), GetOrderStats(top=3), GetOrderStats(top=None)):
            assert sharded.query(query, after=heads) == plain.query(query)
        assert len(sharded.query(GetOrderStats(top=None)).top_products) == 23


def test_bad_queries_and_bad_after_are_invalid(pair: tuple[Engine, ShardedEngine]) -> None:
    _, sharded = pair
    with pytest.raises(InvalidQuery):
        sharded.query(SearchOrders(page=0))
    with pytest.raises(InvalidQuery):
        sharded.query(object())
    for after in (3, {7: 1}, {0: "x"}, {True: 1}):
        with pytest.raises(InvalidQuery) as caught:
            sharded.query(GetOrderStats(), after=after)
        assert caught.value.field == "after"


def test_read_your_writes_with_a_result_or_heads(sharded: ShardedEngine) -> None:
    for i in range(5):
        result = sharded.execute(create(f"n-{i}", customer="rw"))
        answer = sharded.query(GetOrderById(f"n-{i}"), after=result)
        assert answer is not None
        assert answer.order_id == f"n-{i}"
    page = sharded.query(GetCustomerOrders("rw"), after=sharded.heads())
    assert [v.order_id for v in page.items] == [f"n-{i}" for i in reversed(range(5))]


def test_a_position_never_reached_gives_the_merged_stale_answer_in_time(
    sharded: ShardedEngine,
) -> None:
    for i in range(6):
        sharded.execute(create(f"s-{i}"))
    heads = sharded.heads()
    sharded.query(GetOrderStats(), after=heads)
    began = time.monotonic()
    with pytest.raises(ConsistencyTimeout) as caught:
        sharded.query(SearchOrders(), after={0: heads[0] + 100}, timeout=0.5)
    assert time.monotonic() - began < 1.5
    assert caught.value.wanted == heads[0] + 100
    assert caught.value.reached == heads[0]
    stale = caught.value.stale_result
    assert isinstance(stale, Page)
    assert stale.total == 6
