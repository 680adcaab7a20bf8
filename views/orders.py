"""The order read models: queries, results, validation, routing and the view factory.

Public contract (import path ``views.orders``): :class:`GetOrderById`, :class:`GetCustomerOrders`,
:class:`SearchOrders`, :class:`GetOrderStats`, :class:`OrderView`, :class:`Page`,
:class:`OrderStats`. The engine builds its order views with :func:`order_views` and routes each
query type to the view named in :data:`QUERY_VIEW`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from domain.errors import UnknownView
from store import ViewStore
from views._lmdb import LmdbView
from views._memory import MemoryView
from views._order_models import (
    ORDER_TAGS,
    CustomerOrdersModel,
    OrderDetailsModel,
    OrderSearchModel,
    OrderStatsModel,
)
from views._order_types import (
    GetCustomerOrders,
    GetOrderById,
    GetOrderStats,
    OrderStats,
    OrderView,
    Page,
    SearchOrders,
    validate_query,
)
from views._search import SearchView
from views._view import Backend, ReadModel, View

__all__ = [
    "DEFAULT_BACKENDS",
    "ORDER_TAGS",
    "QUERY_VIEW",
    "CustomerOrdersModel",
    "GetCustomerOrders",
    "GetOrderById",
    "GetOrderStats",
    "OrderDetailsModel",
    "OrderSearchModel",
    "OrderStats",
    "OrderStatsModel",
    "OrderView",
    "Page",
    "SearchOrders",
    "order_views",
    "validate_query",
]

QUERY_VIEW: Final[dict[type, str]] = {
    GetOrderById: "order_details",
    GetCustomerOrders: "customer_orders",
    SearchOrders: "order_search",
    GetOrderStats: "order_stats",
}
"""The view that answers each order query type by default."""

DEFAULT_BACKENDS: Final[Mapping[str, Backend]] = {
    # Persistent: their checkpoints survive a restart, so they need no replay at open.
    "order_details": "lmdb",
    "customer_orders": "lmdb",
    # In memory: rebuilt from the log at open (the projector replays them from position 0);
    # search scans every order and stats are small, both fastest as plain objects.
    "order_search": "memory",
    "order_stats": "memory",
}
"""Where each order view lives when a store is given and ``backends`` does not say."""


def _models() -> list[ReadModel]:
    return [OrderDetailsModel(), CustomerOrdersModel(), OrderSearchModel(), OrderStatsModel()]


def order_views(
    store: ViewStore | None,
    *,
    backends: Mapping[str, Backend] | None = None,
    skip_unknown: bool = False,
) -> list[View]:
    """Build the four order views.

    Args:
        store: The open views store LMDB views live in; None puts every view in memory.
        backends: Overrides of :data:`DEFAULT_BACKENDS` by view name.
        skip_unknown: Let the projector skip (and count) events the codec cannot decode.

    Returns:
        ``order_details``, ``customer_orders``, ``order_search`` and ``order_stats``, in that
        order.

    Raises:
        UnknownView: ``backends`` names a view that does not exist.
        ValueError: A backend is neither ``"memory"`` nor ``"lmdb"``, or ``"lmdb"`` is asked for
            without a store.
    """
    models = _models()
    chosen = dict(DEFAULT_BACKENDS)
    if store is None:
        chosen = dict.fromkeys(chosen, "memory")
    for name, backend in (backends or {}).items():
        if name not in chosen:
            raise UnknownView(name, list(chosen))
        if backend not in {"memory", "lmdb"}:
            raise ValueError(
                f"backend of view {name!r} must be 'memory' or 'lmdb', not {backend!r}"
            )
        chosen[name] = backend
    views: list[View] = []
    for model in models:
        if chosen[model.name] == "memory" and isinstance(model, OrderSearchModel):
            # Indexed in memory (status, totals, counts, creation order, id substrings): the
            # generic memory view would scan every order per search.
            views.append(SearchView(model.name, skip_unknown=skip_unknown))
        elif chosen[model.name] == "memory":
            views.append(MemoryView(model, skip_unknown=skip_unknown))
        elif store is None:
            raise ValueError(f"view {model.name!r} cannot live in LMDB without a store")
        else:
            views.append(LmdbView(model, store, skip_unknown=skip_unknown))
    return views
