from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_kit import order_body, served_engine, serving

from actors import Engine, LogLocked
from api import STATUS_BY_ERROR, create_app, create_app_for_path
from api._params import IF_MATCH_PATTERN, MAX_PAGE
from api._schemas import AMOUNT_PATTERN, PRICE_PATTERN
from domain.errors import EngineError
from domain.ids import ID_PATTERN
from domain.orders import (
    MAX_LINES,
    MAX_QUANTITY,
    Address,
    CreateOrder,
    OrderItem,
    ShipOrder,
)
from views.orders import GetOrderById


def test_the_openapi_document_shows_every_route_with_its_request_body(tmp_path: Path) -> None:
    with served_engine(tmp_path / "data", durability="async") as url:
        spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
        docs = httpx.get(f"{url}/docs", timeout=30)
    assert docs.status_code == 200
    paths = spec["paths"]
    assert set(paths) == {
        "/orders",
        "/orders/search",
        "/orders/{order_id}",
        "/orders/{order_id}/items",
        "/orders/{order_id}/items/{product_id}",
        "/orders/{order_id}/ship",
        "/orders/{order_id}/cancel",
        "/customers/{customer_id}/orders",
        "/stats",
        "/status",
    }
    create = paths["/orders"]["post"]
    body_ref = create["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = spec["components"]["schemas"]
    body = schemas[body_ref.rsplit("/", 1)[1]]
    assert {"customer_id", "items", "shipping_address"} <= set(body["required"])
    assert "AddItemRequest" in schemas
    assert "ErrorAnswer" in schemas
    assert "409" in paths["/orders/{order_id}/ship"]["post"]["responses"]


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_answer_is_documented_with_its_real_schema() -> None:
    spec = create_app(None).openapi()
    for label, operation in _operations(spec):
        for status, answer in operation["responses"].items():
            schema = answer["content"]["application/json"]["schema"]
            # The bug this guards: FastAPI put {"type": "string"} beside the $ref of answers
            # sent with a response class that was not a JSONResponse.
            assert "type" not in schema, (label, status, schema)
            assert "$ref" in schema or "anyOf" in schema, (label, status, schema)
    success = {
        "POST /orders": ("201", "CommandAnswer"),
        "GET /orders/{order_id}": ("200", "OrderDetails"),
        "GET /orders/search": ("200", "Page_OrderView_"),
        "GET /customers/{customer_id}/orders": ("200", "Page_OrderView_"),
        "GET /stats": ("200", "StatsAnswer"),
        "GET /status": ("200", "StatusAnswer"),
        "POST /orders/{order_id}/ship": ("200", "CommandAnswer"),
    }
    operations = dict(_operations(spec))
    for label, (status, name) in success.items():
        schema = operations[label]["responses"][status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{name}"}
    stale = operations["GET /stats"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/StaleStats"} in stale["anyOf"]
    stale_stats = spec["components"]["schemas"]["StaleStats"]
    assert set(stale_stats["required"]) == {"detail", "error", "stale", "result"}
    assert operations["POST /orders"]["responses"]["201"]["headers"]["Location"]["required"]


def test_the_request_rules_the_server_enforces_are_in_the_schema() -> None:
    spec = create_app(None).openapi()
    schemas = spec["components"]["schemas"]
    operations = dict(_operations(spec))

    def parameter(label: str, name: str) -> dict[str, Any]:
        (found,) = [p for p in operations[label]["parameters"] if p["name"] == name]
        schema: dict[str, Any] = found["schema"]
        return schema

    search = "GET /orders/search"
    assert parameter(search, "status")["enum"] == ["pending", "shipped", "cancelled"]
    assert parameter(search, "sort_by")["enum"] == ["created_at", "total_amount", "item_count"]
    assert parameter(search, "sort_order")["enum"] == ["asc", "desc"]
    assert (parameter(search, "page")["minimum"], parameter(search, "page")["maximum"]) == (
        1,
        MAX_PAGE,
    )
    assert (
        parameter(search, "page_size")["minimum"],
        parameter(search, "page_size")["maximum"],
    ) == (
        1,
        1000,
    )
    assert parameter(search, "min_total")["pattern"] == AMOUNT_PATTERN
    assert parameter("POST /orders/{order_id}/ship", "if-match")["pattern"] == IF_MATCH_PATTERN
    assert parameter("POST /orders/{order_id}/ship", "order_id")["pattern"] == ID_PATTERN
    assert parameter("POST /orders", "idempotency-key")["pattern"] == ID_PATTERN
    line = schemas["OrderItemRequest"]["properties"]
    assert (line["quantity"]["minimum"], line["quantity"]["maximum"]) == (1, MAX_QUANTITY)
    assert line["price"]["anyOf"][0]["pattern"] == PRICE_PATTERN
    assert line["product_id"]["pattern"] == ID_PATTERN
    create = schemas["CreateOrderRequest"]
    assert create["additionalProperties"] is False
    assert (
        create["properties"]["items"]["minItems"],
        create["properties"]["items"]["maxItems"],
    ) == (
        1,
        MAX_LINES,
    )
    for label, operation in operations.items():  # FastAPI's "null" for optional parameters
        for found in operation.get("parameters", []):
            assert "anyOf" not in found["schema"], (label, found)


def test_links_lead_from_a_new_order_to_reading_adding_shipping_and_cancelling_it() -> None:
    spec = create_app(None).openapi()
    operations = dict(_operations(spec))
    links = operations["POST /orders"]["responses"]["201"]["links"]
    targets = {link["operationId"] for link in links.values()}
    assert {"get_order", "add_item", "ship_order", "cancel_order"} <= targets
    ids = {operation["operationId"] for operation in operations.values()}
    for operation in operations.values():
        for answer in operation["responses"].values():
            for link in answer.get("links", {}).values():
                assert link["operationId"] in ids


def test_an_order_created_through_any_door_is_reachable_through_every_door(
    tmp_path: Path,
) -> None:
    with (
        Engine.open(tmp_path / "data", durability="async") as engine,
        serving(create_app(engine)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        over_http = http.post("/orders", json=order_body(order_id="web-1")).json()
        python = engine.execute(ShipOrder(order_id="web-1"))
        assert engine.query(GetOrderById("web-1"), after=python.position).status == "shipped"
        created = engine.execute(
            CreateOrder(
                order_id="py.1~a",
                customer_id="c_1",
                items=[OrderItem(product_id="p-1", quantity=1, price=Decimal("1.5"))],
                shipping_address=Address(street="s", city="c", postal_code="p", country="FR"),
            )
        )
        assert http.get("/orders/py.1~a").json()["customer_id"] == "c_1"
        assert (
            http.get("/customers/c_1/orders", params={"after": created.position}).json()["total"]
            == 1
        )
        added = http.post(
            "/orders/py.1~a/items", json={"product_id": "p.2", "quantity": 1, "price": "2"}
        )
        assert added.status_code == 200, added.text
        assert http.delete("/orders/py.1~a/items/p-1").status_code == 200
        assert over_http["order_id"] == "web-1"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"order_id": "search"}, "reserved"),
        ({"order_id": "a/b"}, "'/'"),
        ({"customer_id": "a/b"}, "customer_id may not hold '/'"),
        ({"order_id": "x" * 129}, "order_id is 129 characters long"),
        ({"items": [("p q", 1, "1")]}, "product_id may not hold ' '"),
    ],
)
def test_ids_outside_the_grammar_are_422_at_the_http_door(
    tmp_path: Path, change: dict[str, Any], words: str
) -> None:
    with served_engine(tmp_path / "data", durability="async") as url:
        response = httpx.post(f"{url}/orders", json=order_body(**change), timeout=30)
    assert response.status_code == 422, response.text
    assert words in response.json()["detail"]


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
