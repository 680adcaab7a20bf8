from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from api_kit import order_body, served_engine, serving

from actors import Engine, LogLocked
from api import STATUS_BY_ERROR, create_app, create_app_for_path
from domain.errors import EngineError


def test_the_openapi_document_shows_every_route_with_its_request_body(tmp_path: Path) -> None:
    with served_engine(tmp_path / "data", durability="async") as url:
        spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
        docs = httpx.get(f"{url}/docs", timeout=30)
    assert docs.status_code == 200
    paths = spec["paths"]
    assert {
        "/orders",
        "/orders/search",
        "/orders/{order_id}",
        "/orders/{order_id}/items",
        "/orders/{order_id}/items/{product_id}",
        "/orders/{order_id}/ship",
        "/customers/{customer_id}/orders",
        "/stats",
        "/status",
    } <= set(paths)
    create = paths["/orders"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = spec["components"]["schemas"]
    body = schemas[body_ref.rsplit("/", 1)[1]]
    assert {"customer_id", "items", "shipping_address"} <= set(body["required"])
    assert "AddItemRequest" in schemas
    assert "ErrorAnswer" in schemas
    assert "409" in paths["/orders/{order_id}/ship"]["post"]["responses"]


def test_every_engine_error_has_a_4xx_or_5xx_status() -> None:
    assert all(400 <= status < 600 for status in STATUS_BY_ERROR.values())
    assert all(issubclass(error, EngineError) for error in STATUS_BY_ERROR)


def test_a_closed_engine_answers_503(tmp_path: Path) -> None:
    with (
        Engine.open(tmp_path / "data", durability="async") as engine,
        serving(create_app(engine)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        created = http.post("/orders", json=order_body()).json()
        engine.close()
        for response in (
            http.post("/orders", json=order_body()),
            http.get(f"/orders/{created['order_id']}"),
            http.get("/stats"),
            http.get("/status"),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "EngineClosed"


def test_the_lifespan_app_opens_and_closes_its_own_engine(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with serving(create_app_for_path(path, durability="async")) as url:
        assert httpx.post(f"{url}/orders", json=order_body(), timeout=30).status_code == 201
        with pytest.raises(LogLocked):
            Engine.open(path)
    with Engine.open(path) as engine:  # released at shutdown, and the order is there
        assert engine.store.head() == 1


def test_fifty_parallel_requests_are_all_answered_correctly(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            creates = await asyncio.gather(
                *(http.post("/orders", json=order_body(customer_id="crowd")) for _ in range(50))
            )
            assert [response.status_code for response in creates] == [201] * 50
            positions = sorted(response.json()["position"] for response in creates)
            assert positions == list(range(1, 51))
            order_id = creates[0].json()["order_id"]
            adds = await asyncio.gather(
                *(
                    http.post(
                        f"/orders/{order_id}/items",
                        json={"product_id": f"p{n}", "quantity": 1, "price": "1"},
                    )
                    for n in range(50)
                )
            )
            assert sorted(response.json()["version"] for response in adds) == list(range(2, 52))
            retries = await asyncio.gather(
                *(
                    http.post("/orders", json=order_body(), headers={"Idempotency-Key": "same"})
                    for _ in range(20)
                )
            )
            assert len({response.text for response in retries}) == 1
            head = retries[0].json()["position"]
            reads = await asyncio.gather(
                *(http.get("/customers/crowd/orders", params={"after": head}) for _ in range(25)),
                *(http.get(f"/orders/{order_id}", params={"after": head}) for _ in range(25)),
            )
            assert {response.json().get("total") for response in reads[:25]} == {50}
            assert {response.json().get("item_count") for response in reads[25:]} == {52}
            stats = (await http.get("/stats", params={"after": head})).json()
            assert stats["total_orders"] == 51

    with served_engine(tmp_path / "data", durability="async") as url:
        asyncio.run(scenario(url))
