"""The order read models: queries, results, validation, and the read models themselves.

Public contract (import path ``views.orders``): :class:`GetOrderById`, :class:`GetCustomerOrders`,
:class:`SearchOrders`, :class:`GetOrderStats`, :class:`OrderView`, :class:`Page`,
:class:`OrderStats`. Each order query validates itself (``query.validate()``). The engine's
default views are :func:`order_read_models`; combine them with your own read models as
``Engine.open(path, views=[*order_read_models(), MyModel()])``. :func:`order_views` binds them to
their backends directly (tests and benchmarks).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from store import ViewStore
from views._binding import bind_views
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
    "order_read_models",
    "order_views",
    "validate_query",
]

QUERY_VIEW: Final[dict[type, str]] = {
    GetOrderById: "order_details",
    GetCustomerOrders: "customer_orders",
    SearchOrders: "order_search",
    GetOrderStats: "order_stats",
}
"""The view that answers each order query type (informative: the engine routes every query by
the ``query_types`` of the views it keeps, see :mod:`views._routes`)."""


def order_read_models() -> list[ReadModel]:
    """Return the four order read models, unbound, to pass to ``Engine.open(views=[...])``.

    ``order_details`` and ``customer_orders`` live in LMDB by default, ``order_search`` and
    ``order_stats`` in memory (``view_backends`` overrides either).

    Returns:
        ``order_details``, ``customer_orders``, ``order_search`` and ``order_stats``, in that
        order.
    """
    return [OrderDetailsModel(), CustomerOrdersModel(), OrderSearchModel(), OrderStatsModel()]


DEFAULT_BACKENDS: Final[Mapping[str, Backend]] = {
    model.name: model.default_backend
    for model in (OrderDetailsModel(), CustomerOrdersModel(), OrderSearchModel(), OrderStatsModel())
}
"""Where each order view lives when a store is given and ``backends`` does not say."""


def order_views(
    store: ViewStore | None,
    *,
    backends: Mapping[str, Backend] | None = None,
    skip_unknown: bool = False,
) -> list[View]:
    """Build the four order views, bound to their backends.

    Args:
        store: The open views store LMDB views live in; None puts every view in memory.
        backends: Overrides of :data:`DEFAULT_BACKENDS` by view name.
        skip_unknown: Let the projector skip (and count) events the codec cannot decode.

    Returns:
        ``order_details``, ``customer_orders``, ``order_search`` and ``order_stats``, in that
        order.

    Raises:
        UnknownView: ``backends`` names a view that does not exist.
        InvalidView: A backend is neither ``"memory"`` nor ``"lmdb"``, or ``"lmdb"`` is asked
            for without a store (also a ``ValueError``).
    """
    return bind_views(order_read_models(), store, backends=backends, skip_unknown=skip_unknown)
