from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_kit import order_body, served_engine

from api import ApiSettings
from api._params import MAX_PAGE
from store import RecordedEvent
from views import MemoryView, ReadModel
from views.orders import CustomerOrdersModel, OrderDetailsModel, OrderSearchModel, OrderStatsModel

SETTINGS = ApiSettings(read_timeout=0.3)


class Seeded:
    """A server holding a few known orders (read-only: tests must not write to it)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.ids: dict[str, str] = {}
        self.head = 0

    def create(self, name: str, **body: Any) -> str:
        response = self.http.post("/orders", json=order_body(**body))
        assert response.status_code == 201, response.text
        self.ids[name] = response.json()["order_id"]
        self.head = response.json()["position"]
        return self.ids[name]

    def then(self, method: str, url: str, **kwargs: Any) -> None:
        response = self.http.request(method, url, **kwargs)
        assert response.status_code == 200, response.text
        self.head = response.json()["position"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    path: Path = tmp_path_factory.mktemp("queries") / "data"
    with (
        served_engine(path, SETTINGS, durability="async") as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        seeded = Seeded(http)
        shipped = seeded.create("shipped", items=[("widget", 2, "9.99")])
        seeded.then("POST", f"/orders/{shipped}/ship")
        pending = seeded.create("pending", items=[("gadget", 1, "5"), ("widget", 1, "9.99")])
        cancelled = seeded.create("cancelled", items=[("gizmo", 4, "2.50")])
        seeded.then("POST", f"/orders/{cancelled}/cancel", json={"reason": "duplicate"})
        seeded.create("bobs", customer_id="bob", items=[("Gadget-XL", 3, "100.00")])
        assert pending
        yield seeded


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    with (
        served_engine(tmp_path / "data", SETTINGS, durability="async") as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http


def ids_of(page: dict[str, Any]) -> list[str]:
    return [item["order_id"] for item in page["items"]]


def test_get_order_answers_the_view_with_its_version_as_etag(seeded: Seeded) -> None:
    order_id = seeded.ids["shipped"]
    response = seeded.http.get(f"/orders/{order_id}")
    assert response.status_code == 200
    assert response.headers["etag"] == '"2"'
    body = response.json()
    assert body["order_id"] == order_id
    assert body["customer_id"] == "alice"
    assert body["status"] == "shipped"
    assert body["total_amount"] == "19.98"
    assert body["item_count"] == 2
    assert body["version"] == 2
    assert body["created_at"].endswith("Z")
    assert body["shipped_at"] is not None


def test_get_of_an_order_that_does_not_exist_is_404(seeded: Seeded) -> None:
    response = seeded.http.get("/orders/missing")
    assert response.status_code == 404
    assert response.json()["error"] == "AggregateNotFound"


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/orders/" + "x" * 600, "order_id"),
        ("/orders/a%20b", "order_id"),
        ("/orders/%00", "order_id"),
        ("/orders/-x", "order_id"),
        ("/customers/a%20b/orders", "customer_id"),
    ],
)
def test_a_read_of_an_id_outside_the_grammar_is_422_naming_it(
    seeded: Seeded, url: str, field: str
) -> None:
    response = seeded.http.get(url)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "InvalidQuery"
    assert field in response.json()["detail"]


def test_a_reserved_word_in_a_path_names_no_route(seeded: Seeded) -> None:
    response = seeded.http.get("/customers/search/orders")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


def test_a_customers_orders_come_newest_first_with_page_figures(seeded: Seeded) -> None:
    page = seeded.http.get("/customers/alice/orders").json()
    assert ids_of(page) == [seeded.ids["cancelled"], seeded.ids["pending"], seeded.ids["shipped"]]
    assert (page["total"], page["page"], page["page_size"], page["total_pages"]) == (3, 1, 20, 1)
    second = seeded.http.get("/customers/alice/orders", params={"page": 2, "page_size": 2}).json()
    assert ids_of(second) == [seeded.ids["shipped"]]
    assert second["total_pages"] == 2
    pending = seeded.http.get("/customers/alice/orders", params={"status": "pending"}).json()
    assert ids_of(pending) == [seeded.ids["pending"]]
    assert seeded.http.get("/customers/nobody/orders").json()["total"] == 0


def test_search_matches_ids_filters_totals_and_sorts(seeded: Seeded) -> None:
    found = seeded.http.get("/orders/search", params={"q": "gadget"}).json()
    assert set(ids_of(found)) == {seeded.ids["pending"], seeded.ids["bobs"]}
    cheap = seeded.http.get(
        "/orders/search",
        params={"min_total": "10", "max_total": "19.98", "sort_by": "total_amount"},
    ).json()
    assert ids_of(cheap) == [seeded.ids["shipped"], seeded.ids["pending"], seeded.ids["cancelled"]]
    ascending = seeded.http.get(
        "/orders/search", params={"sort_by": "item_count", "sort_order": "asc", "page_size": 1}
    ).json()
    assert ascending["total"] == 4
    assert ascending["items"][0]["item_count"] == 2
    shipped = seeded.http.get("/orders/search", params={"status": "shipped"}).json()
    assert ids_of(shipped) == [seeded.ids["shipped"]]


def test_stats_answer_exact_money_and_top_products(seeded: Seeded) -> None:
    stats = seeded.http.get("/stats").json()
    assert stats["total_orders"] == 4
    assert stats["by_status"] == {"pending": 2, "shipped": 1, "cancelled": 1}
    assert stats["revenue"] == "19.98"
    # Cancelled orders sold nothing (gizmo is left out); ties go by product id.
    assert stats["top_products"] == [
        {"product_id": "Gadget-XL", "units": 3},
        {"product_id": "widget", "units": 3},
        {"product_id": "gadget", "units": 1},
    ]


def test_status_reports_head_views_lag_and_health(seeded: Seeded) -> None:
    status = seeded.http.get("/status").json()
    assert status["head"] == seeded.head
    assert status["healthy"] is True
    assert set(status["views"]) == {
        "order_details",
        "customer_orders",
        "order_search",
        "order_stats",
    }
    for view in status["views"].values():
        assert {"position", "lag_events", "lag_seconds"} <= set(view)
        assert (view["state"], view["error"], view["attempts"]) == ("ok", "", 0)
    assert {"live_aggregates", "parked_events", "durability", "file_size"} <= set(status)


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/customers/alice/orders", {"page": 0}, "page"),
        ("/customers/alice/orders", {"page_size": 1001}, "page_size"),
        ("/customers/alice/orders", {"status": "lost"}, "status"),
        ("/customers/alice/orders", {"page": "two"}, "page"),
        ("/orders/search", {"sort_by": "colour"}, "sort_by"),
        ("/orders/search", {"sort_order": "up"}, "sort_order"),
        ("/orders/search", {"min_total": "cheap"}, "min_total"),
        ("/orders/search", {"max_total": "NaN"}, "max_total"),
        ("/orders/search", {"min_total": "-1"}, "min_total"),
        ("/orders/search", {"min_total": "1e3"}, "min_total"),
        ("/orders/search", {"page": MAX_PAGE + 1}, "page"),
        ("/orders/search", {"q": "x" * 129}, "q"),
        ("/stats", {"after": -1}, "after"),
        ("/stats", {"after": "later"}, "after"),
    ],
)
def test_bad_query_parameters_are_422_naming_the_parameter(
    seeded: Seeded, url: str, params: dict[str, object], field: str
) -> None:
    response = seeded.http.get(url, params=params)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]


def test_a_page_far_past_the_end_is_empty(seeded: Seeded) -> None:
    response = seeded.http.get("/orders/search", params={"page": MAX_PAGE})
    assert response.status_code == 200
    assert response.json()["items"] == []


def test_a_read_after_a_position_beyond_the_head_is_409_at_once(seeded: Seeded) -> None:
    for url in ("/stats", "/orders/search", "/customers/alice/orders"):
        response = seeded.http.get(url, params={"after": seeded.head + 1000})
        assert response.status_code == 409
        assert response.json()["error"] == "AfterBeyondHead"
        assert f"head ({seeded.head})" in response.json()["detail"]


class GatedView(MemoryView):
    """A memory view whose apply waits while ``gate`` is clear (bounded), outside its lock."""

    def __init__(self, model: OrderStatsModel) -> None:
        super().__init__(model)
        self.gate = threading.Event()
        self.gate.set()

    def apply(self, events: Sequence[RecordedEvent], up_to: int) -> None:
        self.gate.wait(30)
        super().apply(events, up_to)


def test_a_read_whose_view_has_not_reached_after_in_time_is_503_with_the_stale_answer(
    tmp_path: Path,
) -> None:
    stats = GatedView(OrderStatsModel())
    models: list[ReadModel] = [OrderDetailsModel(), CustomerOrdersModel(), OrderSearchModel()]
    views = [*(MemoryView(model) for model in models), stats]
    with (
        served_engine(tmp_path / "data", SETTINGS, durability="async", views=views) as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        first = http.post("/orders", json=order_body()).json()
        assert http.get("/stats", params={"after": first["position"]}).json()["total_orders"] == 1
        stats.gate.clear()
        try:
            second = http.post("/orders", json=order_body()).json()
            response = http.get("/stats", params={"after": second["position"]})
        finally:
            stats.gate.set()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["stale"] is True
    assert body["error"] == "ConsistencyTimeout"
    assert body["result"]["total_orders"] == 1
    assert body["result"]["top_products"] == [{"product_id": "widget", "units": 2}]


def test_reads_after_a_commands_position_see_that_command(client: httpx.Client) -> None:
    for round_ in range(15):
        created = client.post("/orders", json=order_body(customer_id=f"c{round_}")).json()
        after = {"after": created["position"]}
        page = client.get(f"/customers/c{round_}/orders", params=after).json()
        assert ids_of(page) == [created["order_id"]]
        found = client.get("/orders/search", params={"q": created["order_id"], **after}).json()
        assert ids_of(found) == [created["order_id"]]
        assert client.get("/stats", params=after).json()["total_orders"] == round_ + 1
        shipped = client.post(f"/orders/{created['order_id']}/ship").json()
        view = client.get(f"/orders/{created['order_id']}", params={"after": shipped["position"]})
        assert view.json()["status"] == "shipped"


def test_money_sent_as_a_json_number_stays_exact(client: httpx.Client) -> None:
    raw = (
        b'{"customer_id": "exact", "shipping_address": {"street": "s", "city": "c",'
        b' "postal_code": "1", "country": "DE"}, "items": [{"product_id": "p", "quantity": 3,'
        b' "price": 123456789.100001}]}'
    )
    created = client.post("/orders", content=raw, headers={"content-type": "application/json"})
    assert created.status_code == 201, created.text
    order = client.get(f"/orders/{created.json()['order_id']}").json()
    # Through a float this would come back as 370370367.30000305...
    assert order["total_amount"] == "370370367.300003"


def test_money_with_more_places_than_totals_can_keep_exact_is_a_422(client: httpx.Client) -> None:
    raw = (
        b'{"customer_id": "exact", "shipping_address": {"street": "s", "city": "c",'
        b' "postal_code": "1", "country": "DE"}, "items": [{"product_id": "p", "quantity": 3,'
        b' "price": 0.1000000000000000000001}]}'
    )
    created = client.post("/orders", content=raw, headers={"content-type": "application/json"})
    assert created.status_code == 422
    assert "decimal places" in created.json()["detail"]
