"""What the codec's tests share: order events drawn at random, and a small store to damage."""

from __future__ import annotations

import pathlib
from datetime import UTC
from decimal import Decimal

from hypothesis import strategies as st

from domain.orders import (
    ORDERS,
    Address,
    OrderCancelled,
    OrderCreated,
    OrderItem,
    OrderItemAdded,
    OrderItemRemoved,
    OrderShipped,
)
from store import Codec, EventStore, StreamAppend

__all__ = ["CODEC", "events", "overwrite", "store_three", "text"]

text = st.text(max_size=30)
_int64 = st.integers(-(2**63), 2**63 - 1)
_money = st.decimals(places=2, allow_nan=False, allow_infinity=False)
_when = st.datetimes(timezones=st.just(UTC))
_item = st.builds(OrderItem, product_id=text, quantity=_int64, price=_money)
_address = st.builds(Address, street=text, city=text, postal_code=text, country=text)
events = st.one_of(
    st.builds(
        OrderCreated,
        order_id=text,
        customer_id=text,
        items=st.lists(_item, max_size=4).map(tuple),
        shipping_address=_address,
        created_at=_when,
    ),
    st.builds(OrderItemAdded, order_id=text, product_id=text, quantity=_int64, price=_money),
    st.builds(OrderItemRemoved, order_id=text, product_id=text),
    st.builds(OrderShipped, order_id=text, shipped_at=_when),
    st.builds(OrderCancelled, order_id=text, reason=text, cancelled_at=_when),
)
CODEC = Codec(ORDERS.event_types)


def store_three(path: pathlib.Path) -> EventStore:
    """Open a store at ``path`` holding five ``OrderItemAdded`` of one order (positions 1-5)."""
    store = EventStore.open(path, codec=Codec(ORDERS.event_types), durability="async")
    event = OrderItemAdded(order_id="o", product_id="p", quantity=1, price=Decimal("1.00"))
    store.append_batch(
        [StreamAppend(stream_id="o", stream_type="order", expected_version=0, events=[event] * 5)]
    )
    return store


def overwrite(store: EventStore, position: int, value: bytes) -> None:
    """Replace the log value at ``position`` with ``value`` (corruption, by hand)."""
    with store.env.begin(write=True, db=store._dbs["log"]) as txn:
        txn.put(position.to_bytes(8, "big"), value)
