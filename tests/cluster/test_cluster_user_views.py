"""A user's own domain and read model on shards: queries routed to one shard by the routes a
user gives, or merged over every shard by the mergers a user gives; sagas refused."""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cluster_kit
import pytest

from actors import CommandResult, Engine
from cluster import ShardedEngine
from domain.errors import ConsistencyTimeout, InvalidQuery, InvalidSaga
from examples.inventory.fulfilment import FULFILMENT
from examples.inventory.levels import STOCK_LEVELS, GetStockLevel, LowStock, StockLevel
from examples.inventory.sales import SALES
from examples.inventory.schema import inventory_codec
from examples.inventory.stock import STOCK, ReceiveStock, ReserveStock

ray_local = cluster_kit.ray_local

SKUS = [f"sku-{i:02d}" for i in range(12)]


def sku_of(query: GetStockLevel) -> str:
    """A stock level is about one product, the aggregate its sku names."""
    return query.sku


def low_stock(query: LowStock, answers: Sequence[list[StockLevel]]) -> list[StockLevel]:
    """Each shard's low products, merged fewest first (then by sku) and cut to the limit."""
    rows = [row for answer in answers for row in answer]
    rows.sort(key=lambda row: (row.available, row.sku))
    return rows[: query.limit]


def _commands() -> list[Any]:
    commands: list[Any] = [ReceiveStock(sku=sku, quantity=3 + i) for i, sku in enumerate(SKUS)]
    commands += [
        ReserveStock(sku=sku, order_id=f"so-{i}", quantity=1 + i % 3) for i, sku in enumerate(SKUS)
    ]
    return commands


@pytest.fixture(scope="module")
def pair(
    ray_local: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Engine, ShardedEngine, dict[int, int]]]:
    del ray_local
    root = tmp_path_factory.mktemp("user-views")
    options: dict[str, Any] = {
        "deciders": [STOCK, SALES],
        "views": [STOCK_LEVELS],
        "codec": inventory_codec(),
        "durability": "async",
    }
    plain = Engine.open(root / "plain", **options)
    sharded = ShardedEngine.open(
        root / "sharded",
        shards=2,
        mergers={LowStock: low_stock},
        routes={GetStockLevel: sku_of},
        **options,
    )
    try:
        heads: dict[int, int] = {}
        for command in _commands():
            plain.execute(command)
            result: CommandResult = sharded.execute(command, timeout=30)
            heads[result.shard] = max(heads.get(result.shard, 0), result.position)
        assert plain.wait_for_views(timeout=30)
        yield plain, sharded, heads
    finally:
        sharded.close()
        plain.close()


def test_the_products_are_spread_over_both_shards(
    pair: tuple[Engine, ShardedEngine, dict[int, int]],
) -> None:
    _, sharded, heads = pair
    assert sorted(heads) == [0, 1]
    assert {sharded.shard_of(sku) for sku in SKUS} == {0, 1}


def test_a_users_query_merged_over_shards_answers_like_one_engine(
    pair: tuple[Engine, ShardedEngine, dict[int, int]],
) -> None:
    plain, sharded, heads = pair
    for sku in [*SKUS, "never-stocked"]:
        expected = plain.query(GetStockLevel(sku))
        assert sharded.query(GetStockLevel(sku), after=heads, timeout=30) == expected
    for query in [LowStock(), LowStock(threshold=4, limit=3), LowStock(threshold=0)]:
        expected = plain.query(query)
        assert sharded.query(query, after=heads, timeout=30) == expected
    assert len(sharded.query(LowStock(threshold=100, limit=100), after=heads, timeout=30)) == 12


def test_a_routed_query_asks_its_aggregates_shard_alone(
    pair: tuple[Engine, ShardedEngine, dict[int, int]],
) -> None:
    plain, sharded, heads = pair
    for sku in SKUS[:4]:
        mine = sharded.shard_of(sku)
        # A position no other shard will reach: a scatter would time out waiting for it.
        unreachable = {shard: 10**9 for shard in heads if shard != mine}
        found = sharded.query(
            GetStockLevel(sku), after={**unreachable, mine: heads[mine]}, timeout=5
        )
        assert found == plain.query(GetStockLevel(sku))
    with pytest.raises(ConsistencyTimeout):
        sharded.query(LowStock(), after={0: 10**9, 1: heads[1]}, timeout=1)


def test_sagas_are_refused_before_any_shard_starts(tmp_path: Path) -> None:
    with pytest.raises(InvalidSaga, match="ShardedEngine"):
        ShardedEngine.open(
            tmp_path / "sharded", shards=2, deciders=[STOCK, SALES], sagas=[FULFILMENT]
        )
    assert not (tmp_path / "sharded").exists()


def test_a_users_query_type_without_a_merger_is_refused(
    ray_local: None,
    tmp_path: Path,
) -> None:
    del ray_local
    sharded = ShardedEngine.open(
        tmp_path / "sharded",
        shards=2,
        deciders=[STOCK, SALES],
        views=[STOCK_LEVELS],
        codec=inventory_codec(),
        durability="async",
    )
    try:
        with pytest.raises(InvalidQuery, match="mergers"):
            sharded.query(LowStock(), timeout=10)
    finally:
        sharded.close()
