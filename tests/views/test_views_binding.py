"""Binding read models to backends (``views.bind_views``) and routing queries (``QueryRoutes``)."""

from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
from views_kit import open_store

from domain.errors import InvalidQuery, InvalidView, UnknownView
from store import RecordedEvent
from views import LmdbView, MemoryView, QueryRoutes, Storage, View, bind_views
from views._search import SearchView
from views.orders import (
    GetOrderById,
    GetOrderStats,
    SearchOrders,
    order_read_models,
    order_views,
)


class CountTags(msgspec.Struct, frozen=True):
    """How many events of one tag were seen."""

    tag: str


class CountAll(CountTags, frozen=True):
    """A subclass query: routed by its base class."""


class Tally(msgspec.Struct, frozen=True):
    """One tag's count."""

    count: int


class TallyModel:
    """Counts events per tag; refuses an empty tag."""

    tags: frozenset[str] | None = None
    query_types: tuple[type, ...] = (CountTags,)

    def __init__(self, name: str = "tally", default_backend: str | None = None) -> None:
        self.name = name
        if default_backend is not None:
            self.default_backend = default_backend

    def validate(self, query: object) -> None:
        """Refuse an empty tag."""
        if isinstance(query, CountTags) and not query.tag:
            raise InvalidQuery("tag", query.tag, "a non-empty tag")

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Count ``record`` under its tag."""
        table = storage.table("tally", Tally)
        row = table.get(record.tag)
        table.put(record.tag, Tally(1 if row is None else row.count + 1))

    def query(self, storage: Storage, query: object) -> object:
        """Answer a :class:`CountTags`."""
        assert isinstance(query, CountTags)
        row = storage.table("tally", Tally).get(query.tag)
        return 0 if row is None else row.count


class Event(msgspec.Struct, frozen=True, tag="test.Event"):
    """Any event."""


def record(position: int, tag: str = "test.Event") -> RecordedEvent:
    """A recorded event at ``position``."""
    return RecordedEvent(position, "s", "thing", position, tag, 1, 0, "", Event())


ORDER_NAMES: Final = ["order_details", "customer_orders", "order_search", "order_stats"]


def test_read_models_live_in_memory_unless_told_or_declared_otherwise(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        models: list[Any] = [TallyModel("a"), TallyModel("b", "lmdb"), TallyModel("c")]
        views = bind_views(models, store, backends={"c": "lmdb"})
        assert [(type(v), v.name) for v in views] == [
            (MemoryView, "a"),
            (LmdbView, "b"),
            (LmdbView, "c"),
        ]
        # without a store a declared default falls back to memory; an explicit ask does not
        assert isinstance(bind_views([TallyModel("b", "lmdb")], None)[0], MemoryView)
        with pytest.raises(InvalidView, match="without a store"):
            bind_views([TallyModel()], None, backends={"tally": "lmdb"})
        for view in views:
            view.close()


def test_the_order_read_models_bind_to_their_default_backends_and_the_indexed_search(
    tmp_path: Path,
) -> None:
    with open_store(tmp_path) as store:
        views = bind_views([*order_read_models(), TallyModel()], store)
        assert [v.name for v in views] == [*ORDER_NAMES, "tally"]
        assert [v.backend for v in views] == ["lmdb", "lmdb", "memory", "memory", "memory"]
        assert isinstance(views[2], SearchView)  # not the generic memory view: it scans
        assert [type(v) for v in order_views(store)] == [type(v) for v in views[:4]]
        for view in views:
            view.close()


def test_bound_views_are_kept_as_they_are_next_to_read_models() -> None:
    bound = MemoryView(TallyModel("bound"))
    views = bind_views([bound, TallyModel("model")], None, backends={"bound": "memory"})
    assert views[0] is bound
    assert isinstance(views[1], MemoryView)
    with pytest.raises(InvalidView, match="pass its read model instead"):
        bind_views([bound], None, backends={"bound": "lmdb"})


@pytest.mark.parametrize(
    ("items", "backends", "error", "words"),
    [
        ([object()], None, InvalidView, "missing: name, tags, query_types, apply, query"),
        (["tally"], None, InvalidView, "neither a read model nor a bound view"),
        ([TallyModel(), TallyModel()], None, InvalidView, "two views have this name"),
        ([TallyModel("")], None, InvalidView, "non-empty str"),
        ([TallyModel("x", "disk")], None, InvalidView, "default_backend"),
        ([TallyModel()], {"tally": "disk"}, InvalidView, "not 'disk'"),
        ([TallyModel()], {"other": "memory"}, UnknownView, "tally"),
    ],
)
def test_views_that_cannot_be_kept_are_refused_with_what_to_do(
    items: list[Any], backends: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        bind_views(items, None, backends=backends)


def test_queries_route_by_the_query_types_of_the_views() -> None:
    views: list[View] = [*order_views(None), MemoryView(TallyModel())]
    routes = QueryRoutes(views)
    assert routes.view_for(GetOrderById("o")).name == "order_details"
    assert routes.view_for(SearchOrders()).name == "order_search"
    assert routes.view_for(CountTags("x")).name == "tally"
    assert routes.view_for(CountAll("x")).name == "tally"  # by its nearest routed base class
    assert CountTags in routes
    assert CountAll not in routes
    assert routes.allowed == (
        "CountTags",
        "GetCustomerOrders",
        "GetOrderById",
        "GetOrderStats",
        "SearchOrders",
    )


def test_a_query_type_no_view_answers_is_an_invalid_query_naming_the_allowed_ones() -> None:
    routes = QueryRoutes([MemoryView(TallyModel())])
    for query in (GetOrderStats(), "CountTags", object()):
        with pytest.raises(InvalidQuery) as caught:
            routes.resolve(query)
        assert isinstance(caught.value, UnknownView)
        assert caught.value.field == "query"
        assert "allowed: CountTags" in str(caught.value)


def test_validation_belongs_to_the_query_and_to_its_read_model() -> None:
    tally = MemoryView(TallyModel())
    routes = QueryRoutes([*order_views(None), tally])
    with pytest.raises(InvalidQuery, match="tag"):
        routes.resolve(CountTags(""))  # the read model's validate
    with pytest.raises(InvalidQuery, match="page"):
        routes.resolve(SearchOrders(page=0))  # the order query's own validate
    with pytest.raises(InvalidQuery, match="tag"):
        tally.query(CountTags(""))  # the view checks it too when asked directly
    assert routes.resolve(CountTags("test.Event")) is tally
    tally.apply([record(1), record(2)], 2)
    assert tally.query(CountTags("test.Event")) == 2


def test_two_views_answering_one_query_type_are_refused() -> None:
    with pytest.raises(InvalidView, match="CountTags"):
        QueryRoutes([MemoryView(TallyModel("a")), MemoryView(TallyModel("b"))])


def test_a_read_model_may_ask_for_a_projector_of_its_own() -> None:
    model = TallyModel()
    assert not MemoryView(model).isolated
    model.isolated = True  # type: ignore[attr-defined]
    assert MemoryView(model).isolated
