from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_kit import FlakyStore, order_body, served_engine, serving

from actors import Engine
from api import ApiSettings, create_app


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = ApiSettings(read_timeout=2.0)
    with (
        served_engine(tmp_path / "data", settings, durability="async") as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


def create(client: httpx.Client, **extra: object) -> dict[str, object]:
    response = client.post("/orders", json=order_body(**extra))  # type: ignore[arg-type]
    assert response.status_code == 201, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_create_answers_201_with_the_order_id_version_position_etag_and_location(
    client: httpx.Client,
) -> None:
    response = client.post("/orders", json=order_body())
    assert response.status_code == 201
    answer = response.json()
    assert set(answer) == {"order_id", "version", "position"}
    assert answer["version"] == 1
    assert answer["position"] == 1
    assert response.headers["etag"] == '"1"'
    assert response.headers["location"] == f"/orders/{answer['order_id']}"


def test_create_keeps_a_given_order_id(client: httpx.Client) -> None:
    assert create(client, order_id="order-42")["order_id"] == "order-42"


def test_every_command_answers_the_new_version_and_position(client: httpx.Client) -> None:
    order_id = create(client)["order_id"]
    added = client.post(
        f"/orders/{order_id}/items", json={"product_id": "gadget", "quantity": 1, "price": "5"}
    )
    assert added.status_code == 200, added.text
    assert added.json() == {"order_id": order_id, "version": 2, "position": 2}
    assert added.headers["etag"] == '"2"'
    removed = client.delete(f"/orders/{order_id}/items/gadget")
    assert removed.json() == {"order_id": order_id, "version": 3, "position": 3}
    shipped = client.post(f"/orders/{order_id}/ship")
    assert shipped.json() == {"order_id": order_id, "version": 4, "position": 4}
    other = create(client)["order_id"]
    cancelled = client.post(f"/orders/{other}/cancel", json={"reason": "changed my mind"})
    assert cancelled.json() == {"order_id": other, "version": 2, "position": 6}
    view = client.get(f"/orders/{other}", params={"after": 6}).json()
    assert view["status"] == "cancelled"


def test_a_retried_create_with_the_same_idempotency_key_answers_the_original(
    client: httpx.Client,
) -> None:
    headers = {"Idempotency-Key": "checkout-7f3a"}
    first = client.post("/orders", json=order_body(), headers=headers)
    again = client.post("/orders", json=order_body(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    stats = client.get("/stats", params={"after": first.json()["position"]}).json()
    assert stats["total_orders"] == 1


def test_an_idempotency_key_reused_for_another_command_is_409(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "key-1"}
    assert client.post("/orders", json=order_body(), headers=headers).status_code == 201
    other = client.post("/orders", json=order_body(customer_id="bob"), headers=headers)
    assert other.status_code == 409
    assert other.json()["error"] == "IdempotencyConflict"


def test_a_retried_ship_with_the_same_key_answers_the_original(client: httpx.Client) -> None:
    order_id = create(client)["order_id"]
    headers = {"Idempotency-Key": "ship-once"}
    first = client.post(f"/orders/{order_id}/ship", headers=headers)
    again = client.post(f"/orders/{order_id}/ship", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() == {"order_id": order_id, "version": 2, "position": 2}


def test_if_match_with_the_current_version_is_accepted(client: httpx.Client) -> None:
    order_id = create(client)["order_id"]
    etag = client.get(f"/orders/{order_id}").headers["etag"]
    response = client.post(f"/orders/{order_id}/ship", headers={"If-Match": etag})
    assert response.status_code == 200, response.text


def test_if_match_with_a_stale_version_is_409_naming_both_versions(client: httpx.Client) -> None:
    order_id = create(client)["order_id"]
    client.post(f"/orders/{order_id}/items", json={"product_id": "x", "quantity": 1, "price": 1})
    response = client.post(f"/orders/{order_id}/ship", headers={"If-Match": 'W/"1"'})
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "ConcurrencyConflict"
    assert "version 2" in body["detail"]
    assert "expected version 1" in body["detail"]


def test_a_malformed_if_match_is_422(client: httpx.Client) -> None:
    order_id = create(client)["order_id"]
    response = client.post(f"/orders/{order_id}/ship", headers={"If-Match": '"one"'})
    assert response.status_code == 422
    assert "If-Match" in response.json()["detail"]


def test_a_command_on_an_unknown_order_is_404(client: httpx.Client) -> None:
    for response in (
        client.post("/orders/nope/ship"),
        client.post("/orders/nope/cancel", json={"reason": "x"}),
        client.delete("/orders/nope/items/widget"),
        client.post("/orders/nope/items", json={"product_id": "a", "quantity": 1, "price": "1"}),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "AggregateNotFound"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (order_body(items=()), "$.items"),
        (order_body(items=(("w", 0, "1"),)), "$.items[0].quantity"),
        (order_body(items=(("w", 1, "-1"),)), "$.items[0].price"),
        (order_body(customer_id=""), "customer_id must not be empty"),
    ],
)
def test_a_create_with_invalid_input_is_422_saying_where(
    client: httpx.Client, body: dict[str, object], words: str
) -> None:
    response = client.post("/orders", json=body)
    assert response.status_code == 422
    assert response.json()["error"] in {"InvalidBody", "InvalidCommand"}
    assert words in response.json()["detail"]
    assert client.get("/status").json()["head"] == 0


def test_shipping_a_cancelled_order_is_409_and_writes_nothing(client: httpx.Client) -> None:
    order_id = create(client)["order_id"]
    client.post(f"/orders/{order_id}/cancel", json={"reason": "duplicate"})
    response = client.post(f"/orders/{order_id}/ship")
    assert response.status_code == 409
    assert response.json()["error"] == "CommandRejected"
    assert "cancelled, not pending" in response.json()["detail"]
    assert client.get("/status").json()["head"] == 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (None, "JSON body is required"),
        ({"reason": ""}, "$.reason"),
        ({"reason": " \t"}, "$.reason"),
    ],
)
def test_cancel_needs_a_reason_that_is_not_blank(
    client: httpx.Client, body: dict[str, str] | None, words: str
) -> None:
    order_id = create(client)["order_id"]
    response = client.post(f"/orders/{order_id}/cancel", json=body)
    assert response.status_code == 422
    assert words in response.json()["detail"]


def test_removing_the_last_item_is_409(client: httpx.Client) -> None:
    order_id = create(client)["order_id"]
    response = client.delete(f"/orders/{order_id}/items/widget")
    assert response.status_code == 409
    assert response.json()["error"] == "CommandRejected"
    assert "last item" in response.json()["detail"]


def test_two_lines_of_one_product_at_two_prices_are_409(client: httpx.Client) -> None:
    body = order_body(items=(("w", 1, "1.00"), ("w", 1, "2.00")))
    response = client.post("/orders", json=body)
    assert response.status_code == 409
    assert "already in the order at 1.00, not 2.00" in response.json()["detail"]


def test_a_failed_commit_is_503_and_a_retry_succeeds(tmp_path: Path) -> None:
    stores: list[FlakyStore] = []

    def wrap(store: object) -> FlakyStore:
        stores.append(FlakyStore(store))  # type: ignore[arg-type]
        return stores[-1]

    with (
        Engine.open(tmp_path / "data", durability="async", store_wrapper=wrap) as engine,
        serving(create_app(engine)) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        stores[0].failing.set()
        failed = http.post("/orders", json=order_body(), headers={"Idempotency-Key": "k"})
        assert failed.status_code == 503
        assert failed.json()["error"] == "CommitFailed"
        assert failed.headers["retry-after"] == "1"
        stores[0].failing.clear()
        retried = http.post("/orders", json=order_body(), headers={"Idempotency-Key": "k"})
        assert retried.status_code == 201, retried.text
