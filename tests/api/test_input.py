from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_kit import ADDRESS, order_body, served_engine

from api import MAX_BODY_BYTES


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    path: Path = tmp_path_factory.mktemp("input") / "data"
    with (
        served_engine(path, durability="async") as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def order_id(http: httpx.Client) -> str:
    response = http.post("/orders", json=order_body())
    assert response.status_code == 201
    created: str = response.json()["order_id"]
    return created


def post_raw(http: httpx.Client, url: str, raw: bytes) -> httpx.Response:
    return http.post(url, content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b"", "JSON body is required"),
        (b"[]", "Expected `object`"),
        (b'{"customer_id": "a"}', "missing required field"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_a_malformed_body_is_422_with_a_clear_message(
    http: httpx.Client, raw: bytes, words: str
) -> None:
    response = post_raw(http, "/orders", raw)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "InvalidBody"
    assert words in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"customer_id": 7}, "$.customer_id"),
        ({"items": "many"}, "$.items"),
        ({"items": [{"product_id": "p", "quantity": "2", "price": "1"}]}, "$.items[0].quantity"),
        ({"items": [{"product_id": "p", "quantity": 1.5, "price": "1"}]}, "$.items[0].quantity"),
        ({"items": [{"product_id": "p", "quantity": 1, "price": "cheap"}]}, "$.items[0].price"),
        ({"items": [{"product_id": "p", "quantity": 1, "price": True}]}, "$.items[0].price"),
        ({"shipping_address": {**ADDRESS, "planet": "Mars"}}, "planet"),
        ({"discount": "10%"}, "discount"),
    ],
)
def test_wrong_types_and_unknown_fields_are_422_naming_the_field(
    http: httpx.Client, change: dict[str, Any], where: str
) -> None:
    response = http.post("/orders", json={**order_body(), **change})
    assert response.status_code == 422, response.text
    assert where in response.json()["detail"]


@pytest.mark.parametrize(
    "line",
    [
        {"product_id": "p", "quantity": 10**30, "price": "1"},
        {"product_id": "p", "quantity": -(10**30), "price": "1"},
        {"product_id": "p", "quantity": 1, "price": "1e999999"},
        {"product_id": "p", "quantity": 1, "price": "NaN"},
        {"product_id": "p", "quantity": 1, "price": "-Infinity"},
        {"product_id": "x" * 10_000, "quantity": 1, "price": "1"},
    ],
)
def test_absurd_values_are_422_never_500(http: httpx.Client, line: dict[str, Any]) -> None:
    response = http.post("/orders", json=order_body() | {"items": [line]})
    assert response.status_code == 422, response.text


def test_a_huge_body_is_413(http: httpx.Client) -> None:
    padding = "x" * (MAX_BODY_BYTES + 10)
    response = http.post("/orders", json=order_body(customer_id=padding))
    assert response.status_code == 413
    assert response.json()["error"] == "BodyTooLarge"


def test_a_huge_chunked_body_is_413(http: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"customer_id": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}'

    response = http.post("/orders", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_a_body_declaring_a_giant_length_is_413_without_reading_it(http: httpx.Client) -> None:
    url = httpx.URL(str(http.base_url))
    head = (
        "POST /orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10**12}\r\n\r\n"
    )
    with socket.create_connection((url.host, url.port or 80), timeout=10) as raw:
        raw.sendall(head.encode() + b'{"customer_id": ')
        answer = raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_add_item_checks_its_body_too(http: httpx.Client, order_id: str) -> None:
    for raw in (b"{", b'{"product_id": "p", "quantity": 1}', b'{"product_id": "p", "x": 1}'):
        response = post_raw(http, f"/orders/{order_id}/items", raw)
        assert response.status_code == 422, response.text


def test_a_price_that_differs_for_a_product_already_in_the_order_is_409(
    http: httpx.Client, order_id: str
) -> None:
    response = http.post(
        f"/orders/{order_id}/items", json={"product_id": "widget", "quantity": 1, "price": "1.00"}
    )
    assert response.status_code == 409
    assert response.json()["error"] == "CommandRejected"


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("k" * 300, "Idempotency-Key is 300 characters long"),
        ("", "Idempotency-Key must not be empty"),
        ("a/b", "Idempotency-Key may not hold '/'"),
        ("search", "reserved"),
    ],
)
def test_an_idempotency_key_outside_the_id_grammar_is_422(
    http: httpx.Client, key: str, words: str
) -> None:
    response = http.post("/orders", json=order_body(), headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert response.json()["error"] == "InvalidCommand"
    assert words in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/orders/{id}", "GET"),
        ("DELETE", "/orders/{id}", "GET"),
        ("PATCH", "/orders/{id}/items/p", "DELETE"),
        ("GET", "/orders", "POST"),
        ("DELETE", "/orders/search", "GET"),
        ("GET", "/orders/{id}/ship", "POST"),
        ("PUT", "/stats", "GET"),
    ],
)
def test_a_method_a_route_does_not_serve_is_405_with_every_allowed_method(
    http: httpx.Client, order_id: str, method: str, path: str, allow: str
) -> None:
    response = http.request(method, path.replace("{id}", order_id))
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.json() == {"detail": "Method Not Allowed", "error": "MethodNotAllowed"}


def test_an_unknown_route_is_a_json_404(http: httpx.Client) -> None:
    for path in ("/nowhere", "/orders/search/ship", "/orders/a/b/c/d"):
        response = http.post(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not Found", "error": "NotFound"}


def _raw_exchange(http: httpx.Client, request: bytes) -> bytes:
    url = httpx.URL(str(http.base_url))
    with socket.create_connection((url.host, url.port or 80), timeout=10) as raw:
        raw.sendall(request)
        answer = b""
        while chunk := raw.recv(65536):  # the server closes the connection after a 400
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "header", [b"Content-Length: abc", b"Content-Length: -1", b"Bad Header Name: x"]
)
def test_a_request_that_is_not_valid_http_gets_the_json_error_shape(
    http: httpx.Client, header: bytes
) -> None:
    answer = _raw_exchange(
        http, b"POST /orders HTTP/1.1\r\nHost: test\r\n" + header + b"\r\n\r\n{}"
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"content-type: application/json" in head.lower()
    decoded = json.loads(body)
    assert decoded["error"] == "BadRequest"
    assert "Content-Length" in decoded["detail"]
