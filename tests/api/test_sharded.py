"""The same HTTP contract over a 2-shard `ShardedEngine`: the real uvicorn server, real shards.

A command's `position` names its shard (`position * shards + shard`); `?after=` with it reads
the write back, whichever shard it went to, and a position beyond its shard's head is a 409.
"""

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from api_kit import order_body, serving

from api import ApiSettings, ServedEngine, ShardedServed, create_app
from cluster import ShardedEngine

SHARDS = 2


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    # As tests/cluster/cluster_kit.py: whichever module starts Ray stops it at the session's end.
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@pytest.fixture
def sharded(ray_local: None, tmp_path: Path) -> Iterator[ShardedEngine]:
    del ray_local
    with ShardedEngine.open(tmp_path / "sharded", shards=SHARDS) as engine:
        yield engine


def _ids_on(engine: ShardedEngine, shard: int, prefix: str, count: int) -> list[str]:
    ids = (f"{prefix}-{i}" for i in range(10_000))
    return [order_id for order_id in ids if engine.shard_of(order_id) == shard][:count]


def _create(client: httpx.Client, order_id: str, customer: str = "alice") -> dict[str, Any]:
    response = client.post("/orders", json=order_body(customer, order_id=order_id))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_sharded_engine_is_a_served_engine(sharded: ShardedEngine) -> None:
    assert isinstance(sharded, ServedEngine)
    assert isinstance(sharded, ShardedServed)
    with pytest.raises(TypeError, match="cannot serve"):
        create_app(object())  # type: ignore[arg-type]


def test_commands_queries_and_read_your_writes_over_http(sharded: ShardedEngine) -> None:
    orders = _ids_on(sharded, 0, "o", 3) + _ids_on(sharded, 1, "o", 3)
    with serving(create_app(sharded)) as url, httpx.Client(base_url=url, timeout=30) as client:
        created = {order_id: _create(client, order_id) for order_id in orders}
        for order_id, answer in created.items():
            # The position names the shard; the rest is the position in that shard's log.
            assert answer["position"] % SHARDS == sharded.shard_of(order_id)
            assert answer["version"] == 1
        # Read your write: the position a command answered, on every read.
        for order_id, answer in created.items():
            response = client.get(f"/orders/{order_id}", params={"after": answer["position"]})
            assert response.status_code == 200, response.text
            assert response.headers["ETag"] == '"1"'
            assert response.json()["status"] == "pending"
        shipped = client.post(f"/orders/{orders[4]}/ship", headers={"If-Match": '"1"'})
        assert shipped.status_code == 200, shipped.text
        after = {"after": shipped.json()["position"]}
        read = client.get(f"/orders/{orders[4]}", params=after)
        assert (read.json()["status"], read.headers["ETag"]) == ("shipped", '"2"')
        # Pages and stats merge every shard's orders.
        page = client.get("/customers/alice/orders", params=after).json()
        assert page["total"] == 6
        assert {item["order_id"] for item in page["items"]} == set(orders)
        search = client.get("/orders/search", params={"status": "shipped", **after}).json()
        assert [item["order_id"] for item in search["items"]] == [orders[4]]
        stats = client.get("/stats", params=after).json()
        assert stats["total_orders"] == 6
        assert stats["by_status"] == {"pending": 5, "shipped": 1, "cancelled": 0}
        assert stats["top_products"] == [{"product_id": "widget", "units": 12}]  # 6 x 2


def test_a_position_beyond_its_shards_head_is_a_409(sharded: ShardedEngine) -> None:
    order_id = _ids_on(sharded, 1, "o", 1)[0]
    with serving(create_app(sharded)) as url, httpx.Client(base_url=url, timeout=30) as client:
        position = _create(client, order_id)["position"]
        assert client.get("/stats", params={"after": position}).status_code == 200
        assert client.get("/stats", params={"after": 0}).status_code == 200  # waits for nothing
        # Position 1 of shard 0, whose log is empty: a write nobody has made.
        response = client.get("/stats", params={"after": SHARDS})
        assert response.status_code == 409
        assert response.json()["error"] == "AfterBeyondHead"
        assert "shard 0" in response.json()["detail"]
        # The next position of shard 1 is not written yet either.
        response = client.get(f"/orders/{order_id}", params={"after": position + SHARDS})
        assert response.status_code == 409
        assert client.get("/orders/nope").status_code == 404


def test_an_idempotent_retry_answers_the_original_over_shards(sharded: ShardedEngine) -> None:
    headers = {"Idempotency-Key": "checkout-1"}
    with serving(create_app(sharded)) as url, httpx.Client(base_url=url, timeout=30) as client:
        first = client.post("/orders", json=order_body(), headers=headers)
        again = client.post("/orders", json=order_body(), headers=headers)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert client.get("/stats").json()["total_orders"] == 1


def test_status_sums_the_shards_and_shows_each(sharded: ShardedEngine) -> None:
    orders = _ids_on(sharded, 0, "o", 2) + _ids_on(sharded, 1, "o", 1)
    with serving(create_app(sharded)) as url, httpx.Client(base_url=url, timeout=30) as client:
        for order_id in orders:
            _create(client, order_id)
        status = client.get("/status").json()
    assert status["head"] == 3
    assert status["healthy"] is True
    assert {shard: body["head"] for shard, body in status["shards"].items()} == {"0": 2, "1": 1}
    assert set(status["views"]) == set(status["shards"]["0"]["views"])
    assert status["durability"] == "sync"


def test_a_stopped_shard_is_a_503_in_time_and_the_other_keeps_serving(
    sharded: ShardedEngine,
) -> None:
    frozen, live = _ids_on(sharded, 1, "f", 1)[0], _ids_on(sharded, 0, "l", 1)[0]
    settings = ApiSettings(command_timeout=0.5, read_timeout=0.5)
    with (
        serving(create_app(sharded, settings=settings)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        _create(client, frozen)
        _create(client, live)
        pid = sharded.shard_pids()[1]
        os.kill(pid, signal.SIGSTOP)
        try:
            began = time.monotonic()
            response = client.post(f"/orders/{frozen}/ship", headers={"Idempotency-Key": "k"})
            assert response.status_code == 503
            assert response.json()["error"] == "ShardUnavailable"
            assert response.headers["Retry-After"] == "1"
            assert client.get("/stats").status_code == 503
            assert time.monotonic() - began < 5.0
            assert client.get(f"/orders/{live}").status_code == 200
        finally:
            os.kill(pid, signal.SIGCONT)
        # The ship was queued, not lost: the retry under the same key answers it, applied once.
        shipped = client.post(f"/orders/{frozen}/ship", headers={"Idempotency-Key": "k"})
        assert shipped.status_code == 200, shipped.text
        assert shipped.json()["version"] == 2
        read = client.get(f"/orders/{frozen}", params={"after": shipped.json()["position"]})
        assert (read.json()["status"], read.headers["ETag"]) == ("shipped", '"2"')
