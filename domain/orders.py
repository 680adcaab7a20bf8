"""The reference domain: orders. Pure data and pure functions, no actors, no I/O, no clocks.

Commands and value types are plain msgspec Structs: building one never raises, every rule is
checked by :func:`decide` when the command is executed. Each accepted command yields exactly one
event, so an order's version and the log's position advance by one per command.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Final

import msgspec

from domain._order_types import (
    MAX_FIELD_LENGTH,
    MAX_ID_LENGTH,
    MAX_LINES,
    MAX_PRICE,
    MAX_PRICE_PLACES,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    STATUSES,
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderCancelled,
    OrderCommand,
    OrderCreated,
    OrderEvent,
    OrderItem,
    OrderItemAdded,
    OrderItemRemoved,
    OrderShipped,
    OrderState,
    OrderStatus,
    RemoveOrderItem,
    ShipOrder,
    order_total,
)
from domain.errors import AggregateNotFound, CommandRejected, InvalidCommand
from domain.ids import validate_id

__all__ = [
    "MAX_FIELD_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_LINES",
    "MAX_PRICE",
    "MAX_PRICE_PLACES",
    "MAX_QUANTITY",
    "MAX_TEXT_LENGTH",
    "ORDERS",
    "STATUSES",
    "AddOrderItem",
    "Address",
    "CancelOrder",
    "CreateOrder",
    "OrderCancelled",
    "OrderCommand",
    "OrderCreated",
    "OrderDecider",
    "OrderEvent",
    "OrderItem",
    "OrderItemAdded",
    "OrderItemRemoved",
    "OrderShipped",
    "OrderState",
    "OrderStatus",
    "RemoveOrderItem",
    "ShipOrder",
    "order_total",
]

# ---------------------------------------------------------------- validation helpers
# Two kinds of refusal, kept apart because callers act on them differently (HTTP: 422 vs 409):
# - InvalidCommand: the command is wrong whatever the order's state (a bad id, a missing or
#   out-of-range value). The HTTP schema publishes every such rule but the merging ones.
# - CommandRejected (exactly): the command is well-formed but conflicts with the order's state
#   or contents: it exists already, is not pending, lacks the product, would lose its last line,
#   a product's price differs from its line's, merged quantities or lines exceed a limit.


def _show(number: int) -> str:
    # str() of an int over 4300 digits raises ValueError; absurd quantities must still be reported.
    return str(number) if abs(number) <= MAX_QUANTITY else f"{Decimal(number):.3E}"


def _check_text(order_id: str, field: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidCommand(
            order_id, "invalid_type", f"{field} must be a string, got {type(value).__name__}"
        )
    if not value.strip():
        raise InvalidCommand(order_id, f"empty_{field}", f"{field} must not be blank")
    if len(value) > limit:
        raise InvalidCommand(
            order_id, "too_long", f"{field} is {len(value)} characters long; the limit is {limit}"
        )
    return value


def _check_item(order_id: str, product_id: object, quantity: object, price: object) -> OrderItem:
    pid = validate_id(product_id, "product_id", aggregate_id=order_id)
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise InvalidCommand(
            order_id,
            "invalid_type",
            f"quantity of {pid!r} must be an integer, got {type(quantity).__name__}",
        )
    if isinstance(price, bool) or not isinstance(price, Decimal | int):
        raise InvalidCommand(
            order_id,
            "invalid_type",
            f"price of {pid!r} must be a Decimal (never a float), got {type(price).__name__}",
        )
    exact = Decimal(price)
    if not exact.is_finite():
        raise InvalidCommand(order_id, "invalid_price", f"price of {pid!r} must be finite")
    exponent = exact.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PRICE_PLACES:
        # Totals are exact only while they fit Decimal's 28 digits: 6 places x 1e9 x 1e6 x 500
        # lines does; an unbounded number of places would be rounded silently.
        raise InvalidCommand(
            order_id,
            "price_precision",
            f"price of {pid!r} has more than {MAX_PRICE_PLACES} decimal places",
        )
    if quantity < 1:
        raise InvalidCommand(
            order_id,
            "quantity_below_one",
            f"quantity of {pid!r} is {_show(quantity)}; it must be >= 1",
        )
    if quantity > MAX_QUANTITY:
        raise InvalidCommand(
            order_id,
            "quantity_too_large",
            f"quantity of {pid!r} is {_show(quantity)}; the limit is {MAX_QUANTITY}",
        )
    if exact < 0:
        raise InvalidCommand(
            order_id, "negative_price", f"price of {pid!r} is {exact}; it must be >= 0"
        )
    if exact > MAX_PRICE:
        raise InvalidCommand(
            order_id, "price_too_large", f"price of {pid!r} is {exact}; the limit is {MAX_PRICE}"
        )
    return OrderItem(product_id=pid, quantity=quantity, price=exact)


def _require_pending(state: OrderState, action: str) -> None:
    if state.status != "pending":
        raise CommandRejected(
            state.order_id,
            "order_not_pending",
            f"cannot {action} order {state.order_id!r}: it is {state.status}, not pending",
        )


def _decide_create(state: OrderState, cmd: CreateOrder, now: datetime) -> OrderCreated:
    order_id = validate_id(cmd.order_id, "order_id")
    if state.status:
        raise CommandRejected(
            order_id, "order_exists", f"order {order_id!r} already exists; use a new order_id"
        )
    customer_id = validate_id(cmd.customer_id, "customer_id", aggregate_id=order_id)
    if not isinstance(cmd.items, list | tuple):
        raise InvalidCommand(order_id, "invalid_type", "items must be a list of OrderItem")
    if not cmd.items:
        raise InvalidCommand(order_id, "no_items", "an order needs at least one item")
    if len(cmd.items) > MAX_LINES:
        raise InvalidCommand(
            order_id, "too_many_items", f"{len(cmd.items)} items; the limit is {MAX_LINES}"
        )
    lines: dict[str, OrderItem] = {}
    for raw in cmd.items:
        if not isinstance(raw, OrderItem):
            raise InvalidCommand(
                order_id, "invalid_type", f"items must be OrderItem, got {type(raw).__name__}"
            )
        item = _check_item(order_id, raw.product_id, raw.quantity, raw.price)
        lines[item.product_id] = _merge(order_id, lines.get(item.product_id), item)
    address = cmd.shipping_address
    if not isinstance(address, Address):
        raise InvalidCommand(
            order_id,
            "invalid_type",
            f"shipping_address must be an Address, got {type(address).__name__}",
        )
    for field in ("street", "city", "postal_code", "country"):
        _check_text(order_id, field, getattr(address, field), MAX_FIELD_LENGTH)
    return OrderCreated(
        order_id=order_id,
        customer_id=customer_id,
        items=tuple(lines.values()),
        shipping_address=address,
        created_at=now,
    )


def _merge(order_id: str, old: OrderItem | None, new: OrderItem) -> OrderItem:
    if old is None:
        return new
    if old.price != new.price:
        raise CommandRejected(
            order_id,
            "price_mismatch",
            f"{new.product_id!r} is already in the order at {old.price}, not {new.price}",
        )
    if old.quantity + new.quantity > MAX_QUANTITY:
        raise CommandRejected(
            order_id,
            "line_quantity_too_large",
            f"the line of {new.product_id!r} would hold {old.quantity + new.quantity} units; "
            f"the limit is {MAX_QUANTITY}",
        )
    return OrderItem(
        product_id=new.product_id, quantity=old.quantity + new.quantity, price=old.price
    )


def _decide_add(state: OrderState, cmd: AddOrderItem, order_id: str) -> OrderItemAdded:
    _require_pending(state, "add items to")
    item = _check_item(order_id, cmd.product_id, cmd.quantity, cmd.price)
    existing = next((i for i in state.items if i.product_id == item.product_id), None)
    if existing is None and len(state.items) >= MAX_LINES:
        raise CommandRejected(
            order_id, "order_full", f"the order has {MAX_LINES} lines, the limit; no new product"
        )
    _merge(order_id, existing, item)
    return OrderItemAdded(
        order_id=order_id, product_id=item.product_id, quantity=item.quantity, price=item.price
    )


class OrderDecider:
    """The order aggregate as a :class:`~domain.decider.Decider`."""

    stream_type: str = "order"
    command_types: tuple[type, ...] = (
        CreateOrder,
        AddOrderItem,
        RemoveOrderItem,
        ShipOrder,
        CancelOrder,
    )
    event_types: tuple[type[msgspec.Struct], ...] = (
        OrderCreated,
        OrderItemAdded,
        OrderItemRemoved,
        OrderShipped,
        OrderCancelled,
    )
    state_type: type[OrderState] = OrderState
    state_schema_version: int = 1

    def initial(self) -> OrderState:
        """Return the state of an order that does not exist yet."""
        return OrderState()

    def aggregate_id(self, command: OrderCommand) -> str:
        """Return the order id the command is aimed at."""
        return command.order_id

    def decide(
        self, state: OrderState, command: OrderCommand, now: datetime
    ) -> Sequence[msgspec.Struct]:
        """Check ``command`` against ``state``; return its one event or raise.

        Raises:
            AggregateNotFound: The order does not exist (any command but CreateOrder).
            CommandRejected: The command conflicts with the order's state or contents (it
                exists already, is not pending, lacks the product, a price differs...); the
                ``rule`` names it.
            InvalidCommand: The command is wrong whatever the state: an id outside the grammar
                (:mod:`domain.ids`), a missing, blank or out-of-range value, a wrong type.
        """
        if not isinstance(command, self.command_types):
            raise InvalidCommand(
                "", "unknown_command", f"{type(command).__name__} is not an order command"
            )
        if isinstance(command, CreateOrder):
            return (_decide_create(state, command, now),)
        order_id = validate_id(command.order_id, "order_id")
        if not state.status:
            raise AggregateNotFound(order_id, "order")
        if isinstance(command, AddOrderItem):
            return (_decide_add(state, command, order_id),)
        if isinstance(command, RemoveOrderItem):
            _require_pending(state, "remove items from")
            product_id = validate_id(command.product_id, "product_id", aggregate_id=order_id)
            if all(i.product_id != product_id for i in state.items):
                raise CommandRejected(
                    order_id, "item_not_in_order", f"{product_id!r} is not in order {order_id!r}"
                )
            if len(state.items) == 1:
                raise CommandRejected(
                    order_id,
                    "last_item",
                    f"{product_id!r} is the last item of {order_id!r}; cancel the order instead",
                )
            return (OrderItemRemoved(order_id=order_id, product_id=product_id),)
        if isinstance(command, ShipOrder):
            _require_pending(state, "ship")
            return (OrderShipped(order_id=order_id, shipped_at=now),)
        if isinstance(command, CancelOrder):
            _require_pending(state, "cancel")
            reason = _check_text(order_id, "reason", command.reason, MAX_TEXT_LENGTH)
            return (OrderCancelled(order_id=order_id, reason=reason, cancelled_at=now),)
        raise InvalidCommand(  # pragma: no cover - the engine routes by command type
            order_id, "unknown_command", f"{type(command).__name__} is not an order command"
        )

    def evolve(self, state: OrderState, event: msgspec.Struct) -> OrderState:
        """Return the order after ``event``."""
        if isinstance(event, OrderCreated):
            return OrderState(
                order_id=event.order_id,
                customer_id=event.customer_id,
                status="pending",
                items=event.items,
                shipping_address=event.shipping_address,
                created_at=event.created_at,
            )
        if isinstance(event, OrderItemAdded):
            added = OrderItem(
                product_id=event.product_id, quantity=event.quantity, price=event.price
            )
            items = list(state.items)
            for index, item in enumerate(items):
                if item.product_id == event.product_id:
                    items[index] = OrderItem(
                        product_id=item.product_id,
                        quantity=item.quantity + event.quantity,
                        price=item.price,
                    )
                    break
            else:
                items.append(added)
            return msgspec.structs.replace(state, items=tuple(items))
        if isinstance(event, OrderItemRemoved):
            kept = tuple(i for i in state.items if i.product_id != event.product_id)
            return msgspec.structs.replace(state, items=kept)
        if isinstance(event, OrderShipped):
            return msgspec.structs.replace(state, status="shipped", shipped_at=event.shipped_at)
        if isinstance(event, OrderCancelled):
            return msgspec.structs.replace(state, status="cancelled", cancel_reason=event.reason)
        return state


ORDERS: Final = OrderDecider()
"""The order decider instance the engine uses by default."""
