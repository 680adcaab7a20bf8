import copy
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import domain.orders as orders_module
from domain.errors import AggregateNotFound, CommandRejected, EngineError, InvalidCommand
from domain.orders import (
    MAX_FIELD_LENGTH,
    MAX_ID_LENGTH,
    MAX_LINES,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    ORDERS,
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
    RemoveOrderItem,
    ShipOrder,
    order_total,
)
from domain.testing import for_decider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=3)
ADDRESS = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")
ORDER_ID = "order-1"
# The given/when/then kit over the order decider, its clock fixed at NOW.
given_order = for_decider(ORDERS, now=NOW)


# ---------------------------------------------------------------- helpers


def item(product_id: str = "apple", quantity: int = 1, price: str | int = "1.50") -> OrderItem:
    return OrderItem(product_id=product_id, quantity=quantity, price=Decimal(price))


def create(*items: OrderItem, **overrides: Any) -> CreateOrder:
    fields: dict[str, Any] = {
        "order_id": ORDER_ID,
        "customer_id": "alice",
        "items": list(items) or [item()],
        "shipping_address": ADDRESS,
    }
    fields.update(overrides)
    return CreateOrder(**fields)


def apply(state: OrderState, command: OrderCommand, now: datetime = NOW) -> OrderState:
    events = ORDERS.decide(state, command, now)
    assert len(events) == 1
    return ORDERS.evolve(state, events[0])


def pending(*items: OrderItem) -> OrderState:
    return apply(ORDERS.initial(), create(*items))


def created(*items: OrderItem) -> OrderCreated:
    """The event of ``create(*items)``, as a past event for ``given_order``."""
    return OrderCreated(
        order_id=ORDER_ID,
        customer_id="alice",
        items=items or (item(),),
        shipping_address=ADDRESS,
        created_at=NOW,
    )


SHIPPED = OrderShipped(order_id=ORDER_ID, shipped_at=NOW)
CANCELLED = OrderCancelled(order_id=ORDER_ID, reason="x", cancelled_at=NOW)
TWO_ITEMS = created(item("apple"), item("pear"))
HISTORIES = {
    "pending": (TWO_ITEMS,),
    "shipped": (TWO_ITEMS, SHIPPED),
    "cancelled": (TWO_ITEMS, CANCELLED),
}


def rejection(state: OrderState, command: Any) -> CommandRejected:
    with pytest.raises(CommandRejected) as caught:
        ORDERS.decide(state, command, NOW)
    return caught.value


def business_rejection(state: OrderState, command: Any, rule: str) -> CommandRejected:
    """The command breaks a domain rule: exactly CommandRejected (not InvalidCommand)."""
    error = rejection(state, command)
    assert type(error) is CommandRejected
    assert error.rule == rule
    assert error.aggregate_id == ORDER_ID
    return error


def input_rejection(state: OrderState, command: Any, rule: str) -> InvalidCommand:
    """The command is wrong whatever the state: InvalidCommand, aimed at the order."""
    error = invalid(state, command, rule)
    assert error.aggregate_id == ORDER_ID
    return error


def invalid(state: OrderState, command: Any, rule: str | None = None) -> InvalidCommand:
    error = rejection(state, command)
    assert isinstance(error, InvalidCommand)
    if rule is not None:
        assert error.rule == rule
    return error


def raw(cls: Callable[..., Any], **fields: Any) -> Any:
    """Build a command or value type from fields of any (possibly wrong) type."""
    return cls(**fields)


def snapshot(value: msgspec.Struct) -> bytes:
    return msgspec.msgpack.encode(value)


# ---------------------------------------------------------------- accepted commands


def test_creating_an_order_yields_one_order_created_event_with_its_items() -> None:
    command = create(item("apple", 2, "1.50"), item("pear", 1, "0.99"))
    given_order().when(command).then(
        OrderCreated(
            order_id=ORDER_ID,
            customer_id="alice",
            items=(item("apple", 2, "1.50"), item("pear", 1, "0.99")),
            shipping_address=ADDRESS,
            created_at=NOW,
        ),
    )


def test_a_created_order_is_pending_with_its_items_customer_and_address() -> None:
    state = pending(item("apple", 2, "1.50"), item("pear", 1, "0.99"))
    assert state.status == "pending"
    assert state.order_id == ORDER_ID
    assert state.customer_id == "alice"
    assert state.shipping_address == ADDRESS
    assert state.created_at == NOW
    assert state.shipped_at is None
    assert state.items == (item("apple", 2, "1.50"), item("pear", 1, "0.99"))
    assert order_total(state.items) == Decimal("3.99")


def test_the_initial_state_is_an_order_that_does_not_exist_yet() -> None:
    state = ORDERS.initial()
    assert state.status == ""
    assert state.items == ()
    assert order_total(state.items) == Decimal(0)


def test_the_order_total_is_exact_decimal_arithmetic() -> None:
    state = pending(item("a", 3, "0.10"), item("b", 1, "0.20"))
    assert order_total(state.items) == Decimal("0.50")
    assert isinstance(order_total(state.items), Decimal)


def test_creating_an_order_with_the_same_product_twice_merges_the_lines() -> None:
    state = pending(item("apple", 2, "1.50"), item("pear"), item("apple", 3, "1.50"))
    assert state.items == (item("apple", 5, "1.50"), item("pear"))


def test_adding_a_new_product_appends_a_line() -> None:
    state = apply(
        pending(item("apple")),
        AddOrderItem(order_id=ORDER_ID, product_id="pear", quantity=4, price=Decimal("2.00")),
    )
    assert state.items == (item("apple"), item("pear", 4, "2.00"))


def test_adding_a_product_already_in_the_order_adds_to_its_quantity() -> None:
    command = AddOrderItem(order_id=ORDER_ID, product_id="apple", quantity=3, price=Decimal("1.50"))
    outcome = (
        given_order(created(item("apple", 2, "1.50")))
        .when(command)
        .then(
            OrderItemAdded(order_id=ORDER_ID, product_id="apple", quantity=3, price=Decimal("1.50"))
        )
    )
    assert outcome.state.items == (item("apple", 5, "1.50"),)


def test_adding_a_product_at_an_equal_price_written_differently_is_the_same_price() -> None:
    command = AddOrderItem(order_id=ORDER_ID, product_id="apple", quantity=1, price=Decimal("1.5"))
    state = apply(pending(item("apple", 1, "1.50")), command)
    assert state.items == (item("apple", 2, "1.50"),)


def test_removing_a_product_drops_its_line() -> None:
    outcome = (
        given_order(created(item("apple"), item("pear"), item("plum")))
        .when(RemoveOrderItem(order_id=ORDER_ID, product_id="pear"))
        .then(OrderItemRemoved(order_id=ORDER_ID, product_id="pear"))
    )
    assert outcome.state.items == (item("apple"), item("plum"))


def test_shipping_a_pending_order_marks_it_shipped_at_the_given_time() -> None:
    after = (
        given_order(created())
        .when(ShipOrder(order_id=ORDER_ID), now=LATER)
        .then(OrderShipped(order_id=ORDER_ID, shipped_at=LATER))
        .state
    )
    assert after.status == "shipped"
    assert after.shipped_at == LATER
    assert after.items == (item(),)


def test_cancelling_a_pending_order_records_the_reason() -> None:
    after = (
        given_order(created())
        .when(CancelOrder(order_id=ORDER_ID, reason="too slow"), now=LATER)
        .then(OrderCancelled(order_id=ORDER_ID, reason="too slow", cancelled_at=LATER))
        .state
    )
    assert after.status == "cancelled"
    assert after.cancel_reason == "too slow"
    assert after.shipped_at is None


def test_a_zero_price_is_accepted() -> None:
    assert pending(item("gift", 1, "0")).items == (item("gift", 1, "0"),)


def test_an_integer_price_is_accepted_and_stored_as_a_decimal() -> None:
    command = create(raw(OrderItem, product_id="apple", quantity=1, price=7))
    created = ORDERS.decide(ORDERS.initial(), command, NOW)[0]
    assert isinstance(created, OrderCreated)
    assert type(created.items[0].price) is Decimal
    assert created.items[0].price == Decimal(7)


def test_the_largest_allowed_values_are_accepted() -> None:
    command = create(
        *[item(f"p{index:03}", MAX_QUANTITY, str(MAX_PRICE)) for index in range(MAX_LINES)],
        order_id="o" * MAX_ID_LENGTH,
        customer_id="c" * MAX_ID_LENGTH,
    )
    state = apply(ORDERS.initial(), command)
    assert len(state.items) == MAX_LINES
    assert order_total(state.items) == MAX_LINES * MAX_QUANTITY * MAX_PRICE
    reason = "r" * MAX_TEXT_LENGTH
    assert apply(state, CancelOrder(order_id=state.order_id, reason=reason)).cancel_reason == reason


@pytest.mark.parametrize(
    "command",
    [
        create(),
        AddOrderItem(order_id=ORDER_ID, product_id="plum", quantity=1, price=Decimal(1)),
        RemoveOrderItem(order_id=ORDER_ID, product_id="pear"),
        ShipOrder(order_id=ORDER_ID),
        CancelOrder(order_id=ORDER_ID, reason="no longer needed"),
    ],
    ids=lambda command: type(command).__name__,
)
def test_each_accepted_command_yields_exactly_one_event(command: OrderCommand) -> None:
    state = ORDERS.initial() if isinstance(command, CreateOrder) else pending(item(), item("pear"))
    events = ORDERS.decide(state, command, NOW)
    assert len(events) == 1
    assert type(events[0]) in ORDERS.event_types
    assert getattr(events[0], "order_id", None) == ORDER_ID


# ---------------------------------------------------------------- domain rules


def test_creating_an_order_without_items_is_rejected() -> None:
    given_order().when(create(items=[])).then_rejects(
        InvalidCommand, rule="no_items", aggregate_id=ORDER_ID, match="at least one item"
    )


@pytest.mark.parametrize("quantity", [0, -1, -1000])
def test_creating_an_order_with_a_quantity_below_one_is_rejected(quantity: int) -> None:
    error = input_rejection(ORDERS.initial(), create(item("apple", quantity)), "quantity_below_one")
    assert "apple" in str(error)
    assert str(quantity) in str(error)


def test_adding_a_quantity_below_one_is_rejected() -> None:
    command = AddOrderItem(order_id=ORDER_ID, product_id="apple", quantity=0, price=Decimal("1.50"))
    input_rejection(pending(), command, "quantity_below_one")


@pytest.mark.parametrize("price", ["-0.01", "-1", "-1E+5000"])
def test_creating_an_order_with_a_negative_price_is_rejected(price: str) -> None:
    error = input_rejection(ORDERS.initial(), create(item("apple", 1, price)), "negative_price")
    assert "apple" in str(error)
    assert str(Decimal(price)) in str(error)


def test_adding_an_item_with_a_negative_price_is_rejected() -> None:
    command = AddOrderItem(order_id=ORDER_ID, product_id="pear", quantity=1, price=Decimal(-2))
    input_rejection(pending(), command, "negative_price")


@pytest.mark.parametrize(
    ("customer_id", "rule"), [("", "empty_id"), ("   ", "invalid_id"), ("\t\n", "invalid_id")]
)
def test_creating_an_order_with_an_empty_customer_id_is_invalid(
    customer_id: str, rule: str
) -> None:
    error = input_rejection(ORDERS.initial(), create(customer_id=customer_id), rule)
    assert "customer_id" in str(error)


def test_creating_an_order_with_an_empty_order_id_is_invalid() -> None:
    error = invalid(ORDERS.initial(), create(order_id=""), "empty_id")
    assert "order_id must not be empty" in str(error)


_BAD_IDS = [
    ("a/b", "invalid_id"),
    ("search", "reserved_id"),
    ("caf\u00e9", "invalid_id"),
    ("a b", "invalid_id"),
    ("-a", "invalid_id"),
    (".", "invalid_id"),
    ("x" * (MAX_ID_LENGTH + 1), "too_long"),
]


@pytest.mark.parametrize(("bad", "rule"), _BAD_IDS)
def test_every_id_of_a_command_follows_the_one_grammar(bad: str, rule: str) -> None:
    error = invalid(ORDERS.initial(), create(order_id=bad), rule)
    assert "order_id" in str(error)
    invalid(pending(), ShipOrder(order_id=bad), rule)
    for state, command, field in [
        (ORDERS.initial(), create(customer_id=bad), "customer_id"),
        (ORDERS.initial(), create(item(bad)), "product_id"),
        (
            pending(),
            AddOrderItem(order_id=ORDER_ID, product_id=bad, quantity=1, price=Decimal(1)),
            "product_id",
        ),
        (
            pending(item("apple"), item("pear")),
            RemoveOrderItem(order_id=ORDER_ID, product_id=bad),
            "product_id",
        ),
    ]:
        error = input_rejection(state, command, rule)
        assert field in str(error)


def test_ids_at_the_edges_of_the_grammar_are_accepted() -> None:
    longest = "a" * MAX_ID_LENGTH
    odd = "0.a_b~c-D"
    state = apply(ORDERS.initial(), create(item(odd), order_id=longest, customer_id="Search"))
    assert state.order_id == longest
    assert state.customer_id == "Search"
    assert state.items[0].product_id == odd


@pytest.mark.parametrize("history", HISTORIES.values(), ids=HISTORIES.keys())
def test_creating_an_order_whose_id_is_already_used_is_rejected(
    history: tuple[OrderEvent, ...],
) -> None:
    error = (
        given_order(*history)
        .when(create(customer_id="bob"))
        .then_rejects(CommandRejected, exact=True, rule="order_exists", aggregate_id=ORDER_ID)
    )
    assert ORDER_ID in str(error)
    assert "new order_id" in str(error)


@pytest.mark.parametrize("status", ["shipped", "cancelled"])
@pytest.mark.parametrize(
    "command",
    [
        AddOrderItem(order_id=ORDER_ID, product_id="plum", quantity=1, price=Decimal(1)),
        RemoveOrderItem(order_id=ORDER_ID, product_id="pear"),
        ShipOrder(order_id=ORDER_ID),
        CancelOrder(order_id=ORDER_ID, reason="too late"),
    ],
    ids=lambda command: type(command).__name__,
)
def test_changing_an_order_that_is_not_pending_is_rejected(
    status: str, command: OrderCommand
) -> None:
    given_order(*HISTORIES[status]).when(command).then_rejects(
        CommandRejected, exact=True, rule="order_not_pending", aggregate_id=ORDER_ID, match=status
    )


def test_adding_a_product_already_in_the_order_at_a_different_price_is_rejected() -> None:
    command = AddOrderItem(order_id=ORDER_ID, product_id="apple", quantity=1, price=Decimal(2))
    error = (
        given_order(created(item("apple", 1, "1.50")))
        .when(command)
        .then_rejects(CommandRejected, exact=True, rule="price_mismatch")
    )
    assert "apple" in str(error)
    assert "1.50" in str(error)
    assert "2" in str(error)


def test_creating_an_order_with_one_product_at_two_prices_is_rejected() -> None:
    command = create(item("apple", 1, "1.50"), item("apple", 1, "1.60"))
    business_rejection(ORDERS.initial(), command, "price_mismatch")


def test_merging_lines_beyond_the_quantity_limit_is_rejected() -> None:
    command = create(item("apple", MAX_QUANTITY), item("apple", 1))
    business_rejection(ORDERS.initial(), command, "line_quantity_too_large")
    add = AddOrderItem(
        order_id=ORDER_ID, product_id="apple", quantity=MAX_QUANTITY, price=Decimal("1.50")
    )
    business_rejection(pending(item("apple", 1, "1.50")), add, "line_quantity_too_large")


def test_removing_a_product_that_is_not_in_the_order_is_rejected() -> None:
    command = RemoveOrderItem(order_id=ORDER_ID, product_id="banana")
    given_order(TWO_ITEMS).when(command).then_rejects(
        CommandRejected, exact=True, rule="item_not_in_order", match="banana"
    )


def test_removing_the_last_item_is_rejected_with_advice_to_cancel() -> None:
    command = RemoveOrderItem(order_id=ORDER_ID, product_id="apple")
    given_order(created(item("apple", 5))).when(command).then_rejects(
        CommandRejected, exact=True, rule="last_item", match="cancel"
    )


def test_removing_items_until_one_is_left_works_and_then_the_last_one_is_rejected() -> None:
    state = pending(item("a"), item("b"), item("c"))
    state = apply(state, RemoveOrderItem(order_id=ORDER_ID, product_id="a"))
    state = apply(state, RemoveOrderItem(order_id=ORDER_ID, product_id="c"))
    assert state.items == (item("b"),)
    business_rejection(state, RemoveOrderItem(order_id=ORDER_ID, product_id="b"), "last_item")


@pytest.mark.parametrize("reason", ["", "  "])
def test_cancelling_with_an_empty_reason_is_invalid(reason: str) -> None:
    error = input_rejection(
        pending(), CancelOrder(order_id=ORDER_ID, reason=reason), "empty_reason"
    )
    assert "reason" in str(error)


@pytest.mark.parametrize(
    "command",
    [
        AddOrderItem(order_id="ghost", product_id="apple", quantity=1, price=Decimal(1)),
        RemoveOrderItem(order_id="ghost", product_id="apple"),
        ShipOrder(order_id="ghost"),
        CancelOrder(order_id="ghost", reason="never existed"),
    ],
    ids=lambda command: type(command).__name__,
)
def test_a_command_for_an_unknown_order_raises_aggregate_not_found(command: OrderCommand) -> None:
    with pytest.raises(AggregateNotFound) as caught:
        ORDERS.decide(ORDERS.initial(), command, NOW)
    assert caught.value.aggregate_id == "ghost"
    assert caught.value.stream_type == "order"
    assert "ghost" in str(caught.value)
    assert not isinstance(caught.value, CommandRejected)


def test_aggregate_not_found_wins_over_bad_fields_of_the_command() -> None:
    command = CancelOrder(order_id="ghost", reason="")
    with pytest.raises(AggregateNotFound):
        ORDERS.decide(ORDERS.initial(), command, NOW)


# ---------------------------------------------------------------- malformed commands


def _garbage_create_cases() -> list[tuple[str, Any, str]]:
    long_id = "x" * (MAX_ID_LENGTH + 1)
    return [
        (
            "float price",
            create(raw(OrderItem, product_id="a", quantity=1, price=1.5)),
            "invalid_type",
        ),
        (
            "str price",
            create(raw(OrderItem, product_id="a", quantity=1, price="1.5")),
            "invalid_type",
        ),
        (
            "bool price",
            create(raw(OrderItem, product_id="a", quantity=1, price=True)),
            "invalid_type",
        ),
        (
            "None price",
            create(raw(OrderItem, product_id="a", quantity=1, price=None)),
            "invalid_type",
        ),
        ("nan price", create(item("a", 1, "NaN")), "invalid_price"),
        ("snan price", create(item("a", 1, "sNaN")), "invalid_price"),
        ("infinite price", create(item("a", 1, "Infinity")), "invalid_price"),
        ("huge price", create(item("a", 1, str(MAX_PRICE + Decimal("0.01")))), "price_too_large"),
        ("huge int price", create(raw(OrderItem, product_id="a", quantity=1, price=10**5000)), ""),
        (
            "str quantity",
            create(raw(OrderItem, product_id="a", quantity="2", price=Decimal(1))),
            "",
        ),
        (
            "bool quantity",
            create(raw(OrderItem, product_id="a", quantity=True, price=Decimal(1))),
            "",
        ),
        (
            "float quantity",
            create(raw(OrderItem, product_id="a", quantity=2.0, price=Decimal(1))),
            "",
        ),
        ("huge quantity", create(item("a", MAX_QUANTITY + 1)), "quantity_too_large"),
        ("absurd quantity", create(item("a", 10**5000)), "quantity_too_large"),
        (
            "None product_id",
            create(raw(OrderItem, product_id=None, quantity=1, price=Decimal(1))),
            "",
        ),
        ("long product_id", create(item(long_id)), "too_long"),
        ("None customer_id", create(customer_id=None), "invalid_type"),
        ("int customer_id", create(customer_id=42), "invalid_type"),
        ("long customer_id", create(customer_id=long_id), "too_long"),
        ("None order_id", create(order_id=None), "invalid_type"),
        ("long order_id", create(order_id=long_id), "too_long"),
        ("too many items", create(*[item(f"p{i}") for i in range(MAX_LINES + 1)]), ""),
        ("dict in items", create(items=[{"product_id": "a", "quantity": 1, "price": 1}]), ""),
        ("None in items", create(items=[item(), None]), "invalid_type"),
        ("items is None", create(items=None), "invalid_type"),
        ("items is a str", create(items="apple"), "invalid_type"),
        ("address is a dict", create(shipping_address={"street": "s"}), "invalid_type"),
        ("address is None", create(shipping_address=None), "invalid_type"),
        (
            "address field None",
            create(
                shipping_address=raw(Address, street=None, city="c", postal_code="p", country="c")
            ),
            "invalid_type",
        ),
        (
            "long address field",
            create(
                shipping_address=raw(
                    Address,
                    street="s",
                    city="c" * (MAX_FIELD_LENGTH + 1),
                    postal_code="p",
                    country="c",
                )
            ),
            "too_long",
        ),
    ]


@pytest.mark.parametrize(
    ("command", "rule"),
    [(command, rule) for _, command, rule in _garbage_create_cases()],
    ids=[name for name, _, _ in _garbage_create_cases()],
)
def test_a_malformed_create_order_is_an_invalid_command(command: Any, rule: str) -> None:
    error = invalid(ORDERS.initial(), command, rule or None)
    assert isinstance(error, CommandRejected)
    assert str(error)


def test_a_float_price_is_rejected_with_a_message_that_says_decimal() -> None:
    command = create(raw(OrderItem, product_id="apple", quantity=1, price=1.5))
    error = invalid(ORDERS.initial(), command, "invalid_type")
    assert "Decimal" in str(error)
    assert "float" in str(error)
    assert "apple" in str(error)


def test_an_absurd_quantity_is_reported_without_crashing_on_its_size() -> None:
    error = invalid(ORDERS.initial(), create(item("apple", 10**5000)), "quantity_too_large")
    assert "1.000E+5000" in str(error)
    assert str(MAX_QUANTITY) in str(error)
    negative = input_rejection(
        ORDERS.initial(), create(item("apple", -(10**5000))), "quantity_below_one"
    )
    assert "-1.000E+5000" in str(negative)


def _garbage_change_cases() -> list[tuple[str, Any, str]]:
    long_text = "x" * (MAX_TEXT_LENGTH + 1)
    long_id = "x" * (MAX_ID_LENGTH + 1)
    return [
        (
            "float price",
            raw(AddOrderItem, order_id=ORDER_ID, product_id="p", quantity=1, price=0.1),
            "invalid_type",
        ),
        (
            "str quantity",
            raw(AddOrderItem, order_id=ORDER_ID, product_id="p", quantity="1", price=Decimal(1)),
            "invalid_type",
        ),
        (
            "bool quantity",
            raw(AddOrderItem, order_id=ORDER_ID, product_id="p", quantity=False, price=Decimal(1)),
            "invalid_type",
        ),
        (
            "huge quantity",
            raw(AddOrderItem, order_id=ORDER_ID, product_id="p", quantity=10**12, price=Decimal(1)),
            "quantity_too_large",
        ),
        (
            "huge price",
            raw(
                AddOrderItem, order_id=ORDER_ID, product_id="p", quantity=1, price=Decimal("1E+100")
            ),
            "price_too_large",
        ),
        (
            "None product_id",
            raw(AddOrderItem, order_id=ORDER_ID, product_id=None, quantity=1, price=Decimal(1)),
            "invalid_type",
        ),
        (
            "long product_id",
            raw(AddOrderItem, order_id=ORDER_ID, product_id=long_id, quantity=1, price=Decimal(1)),
            "too_long",
        ),
        (
            "remove None product",
            raw(RemoveOrderItem, order_id=ORDER_ID, product_id=None),
            "invalid_type",
        ),
        (
            "remove long product",
            raw(RemoveOrderItem, order_id=ORDER_ID, product_id=long_id),
            "too_long",
        ),
        ("cancel None reason", raw(CancelOrder, order_id=ORDER_ID, reason=None), "invalid_type"),
        ("cancel long reason", raw(CancelOrder, order_id=ORDER_ID, reason=long_text), "too_long"),
        ("ship int order_id", raw(ShipOrder, order_id=1), "invalid_type"),
        ("ship long order_id", raw(ShipOrder, order_id=long_id), "too_long"),
        ("unknown command", object(), "unknown_command"),
        ("a state instead of a command", OrderState(order_id=ORDER_ID), "unknown_command"),
    ]


@pytest.mark.parametrize(
    ("command", "rule"),
    [(command, rule) for _, command, rule in _garbage_change_cases()],
    ids=[name for name, _, _ in _garbage_change_cases()],
)
def test_a_malformed_change_to_a_pending_order_is_an_invalid_command(
    command: Any, rule: str
) -> None:
    invalid(pending(item("apple", 1, "1.50"), item("pear")), command, rule)


def test_adding_a_new_product_to_an_order_at_the_line_limit_is_rejected() -> None:
    state = pending(*[item(f"p{index}") for index in range(MAX_LINES)])
    new = AddOrderItem(order_id=ORDER_ID, product_id="one-more", quantity=1, price=Decimal(1))
    business_rejection(state, new, "order_full")
    existing = AddOrderItem(order_id=ORDER_ID, product_id="p7", quantity=1, price=Decimal("1.50"))
    assert apply(state, existing).items[7] == item("p7", 2, "1.50")


def test_an_unknown_command_type_is_an_invalid_command_even_for_an_unknown_order() -> None:
    invalid(ORDERS.initial(), object(), "unknown_command")


# ---------------------------------------------------------------- garbage in, EngineError out

_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**6000), max_value=10**6000),
    st.floats(),
    st.decimals(),
    st.text(max_size=5),
    st.text(max_size=300),
    st.just(""),
    st.binary(max_size=5),
    st.sampled_from(["apple", ORDER_ID, " ", "x" * 1001]),
)
_garbage: st.SearchStrategy[Any] = st.one_of(
    _scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.text(max_size=3), _scalars)
)
_item_or_garbage: st.SearchStrategy[Any] = st.one_of(
    st.builds(OrderItem, product_id=_garbage, quantity=_garbage, price=_garbage), _garbage
)
_address_or_garbage: st.SearchStrategy[Any] = st.one_of(
    st.builds(Address, street=_garbage, city=_garbage, postal_code=_garbage, country=_garbage),
    _garbage,
)
_order_id: st.SearchStrategy[Any] = st.one_of(st.just(ORDER_ID), _garbage)
_garbage_commands: st.SearchStrategy[Any] = st.one_of(
    st.builds(
        CreateOrder,
        customer_id=_garbage,
        items=st.one_of(st.lists(_item_or_garbage, max_size=4), _garbage),
        shipping_address=_address_or_garbage,
        order_id=_order_id,
        command_id=_garbage,
        expected_version=_garbage,
    ),
    st.builds(
        AddOrderItem,
        order_id=_order_id,
        product_id=st.one_of(st.just("apple"), _garbage),
        quantity=_garbage,
        price=_garbage,
    ),
    st.builds(RemoveOrderItem, order_id=_order_id, product_id=_garbage),
    st.builds(ShipOrder, order_id=_order_id, command_id=_garbage),
    st.builds(CancelOrder, order_id=_order_id, reason=_garbage),
    _garbage,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=_garbage_commands, exists=st.booleans())
def test_garbage_commands_build_fine_and_decide_raises_only_engine_errors(
    command: Any, exists: bool
) -> None:
    state = pending(item("apple"), item("pear")) if exists else ORDERS.initial()
    error: EngineError | None = None
    try:
        events = ORDERS.decide(state, command, NOW)
    except EngineError as caught:
        error = caught
    if error is None:
        assert len(events) == 1
        ORDERS.evolve(state, events[0])
    else:
        assert isinstance(error, CommandRejected | AggregateNotFound)
        assert str(error)


def test_building_commands_from_garbage_never_raises() -> None:
    # Construction does not validate: every rule is checked when the command is executed.
    commands = [
        CreateOrder(customer_id=None, items=None, shipping_address=None, order_id=3),  # type: ignore[arg-type]
        CreateOrder(customer_id="", items=[], shipping_address=ADDRESS),
        AddOrderItem(order_id=None, product_id=[], quantity="many", price=1.5),  # type: ignore[arg-type]
        RemoveOrderItem(order_id=b"x", product_id={}),  # type: ignore[arg-type]
        ShipOrder(order_id=float("nan"), expected_version="v"),  # type: ignore[arg-type]
        CancelOrder(order_id=ORDER_ID, reason=None),  # type: ignore[arg-type]
        OrderItem(product_id=1, quantity=True, price=float("inf")),  # type: ignore[arg-type]
        Address(street=None, city=None, postal_code=None, country=None),  # type: ignore[arg-type]
    ]
    assert len(commands) == 8


# ---------------------------------------------------------------- time and purity


class _NoClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> Any:  # noqa: ARG003
        raise AssertionError("decide read the clock")

    @classmethod
    def utcnow(cls) -> Any:
        raise AssertionError("decide read the clock")

    @classmethod
    def today(cls) -> Any:
        raise AssertionError("decide read the clock")


def _lifecycle(ship: bool) -> list[OrderCommand]:
    end: OrderCommand = (
        ShipOrder(order_id=ORDER_ID) if ship else CancelOrder(order_id=ORDER_ID, reason="nope")
    )
    return [
        create(item("apple", 2), item("pear")),
        AddOrderItem(order_id=ORDER_ID, product_id="plum", quantity=1, price=Decimal(3)),
        RemoveOrderItem(order_id=ORDER_ID, product_id="pear"),
        end,
    ]


def _run(commands: Sequence[OrderCommand], now: datetime) -> list[msgspec.Struct]:
    state, events = ORDERS.initial(), list[msgspec.Struct]()
    for command in commands:
        new = ORDERS.decide(state, command, now)
        events.extend(new)
        for event in new:
            state = ORDERS.evolve(state, event)
    return events


@pytest.mark.parametrize("ship", [True, False])
def test_decide_does_not_read_the_clock(monkeypatch: pytest.MonkeyPatch, ship: bool) -> None:
    monkeypatch.setattr(orders_module, "datetime", _NoClock)
    assert len(_run(_lifecycle(ship), NOW)) == 4


@pytest.mark.parametrize("ship", [True, False])
def test_the_same_commands_at_the_same_now_give_the_same_events(ship: bool) -> None:
    assert _run(_lifecycle(ship), NOW) == _run(_lifecycle(ship), NOW)


def test_events_carry_the_given_now_even_one_far_in_the_past() -> None:
    long_ago = datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)
    created, _, _, shipped_event = _run(_lifecycle(ship=True), long_ago)
    assert isinstance(created, OrderCreated)
    assert created.created_at == long_ago
    assert isinstance(shipped_event, OrderShipped)
    assert shipped_event.shipped_at == long_ago
    cancelled_event = _run(_lifecycle(ship=False), long_ago)[-1]
    assert isinstance(cancelled_event, OrderCancelled)
    assert cancelled_event.cancelled_at == long_ago


def test_different_nows_only_change_the_timestamps() -> None:
    early, late = _run(_lifecycle(ship=True), NOW), _run(_lifecycle(ship=True), LATER)
    assert early != late
    assert early[1:3] == late[1:3]


@pytest.mark.parametrize("ship", [True, False])
def test_evolve_does_not_change_its_input_state(ship: bool) -> None:
    state = ORDERS.initial()
    for event in _run(_lifecycle(ship), NOW):
        before, deep = snapshot(state), copy.deepcopy(state)
        after = ORDERS.evolve(state, event)
        assert snapshot(state) == before
        assert state == deep
        assert after is not state
        state = after


def test_decide_does_not_change_the_state_or_the_command() -> None:
    state = pending(item("apple"), item("pear"))
    command = AddOrderItem(order_id=ORDER_ID, product_id="apple", quantity=2, price=Decimal("1.50"))
    state_before, command_before = snapshot(state), snapshot(command)
    ORDERS.decide(state, command, NOW)
    assert snapshot(state) == state_before
    assert snapshot(command) == command_before


def test_a_rejected_command_leaves_the_state_unchanged() -> None:
    state = pending(item("apple"))
    before = snapshot(state)
    business_rejection(state, RemoveOrderItem(order_id=ORDER_ID, product_id="apple"), "last_item")
    assert snapshot(state) == before


def test_the_event_does_not_share_a_mutable_item_list_with_the_command() -> None:
    command = create(item("apple"))
    created = ORDERS.decide(ORDERS.initial(), command, NOW)[0]
    command.items.append(item("pear"))
    assert isinstance(created, OrderCreated)
    assert created.items == (item("apple"),)


def test_states_events_and_value_types_are_frozen() -> None:
    state = pending()
    event = ORDERS.decide(ORDERS.initial(), create(), NOW)[0]
    for frozen, field in [
        (state, "status"),
        (state.items[0], "quantity"),
        (ADDRESS, "city"),
        (event, "order_id"),
    ]:
        with pytest.raises(AttributeError):
            setattr(frozen, field, "changed")
    assert isinstance(state.items, tuple)


def test_evolve_ignores_an_event_it_does_not_know() -> None:
    class Unrelated(msgspec.Struct):
        order_id: str

    state = pending()
    assert ORDERS.evolve(state, Unrelated(order_id=ORDER_ID)) is state


# ---------------------------------------------------------------- random command sequences

PRODUCTS = ["apple", "pear", "plum", "fig", "kiwi", "lime"]
_prices = st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False, allow_infinity=False)


class Model:
    """An independent, obvious model of one order: product -> (quantity, price) and a status."""

    def __init__(self, lines: list[tuple[str, int, Decimal]]) -> None:
        self.lines: dict[str, tuple[int, Decimal]] = {}
        for product, quantity, price in lines:
            self.add(product, quantity, price)
        self.status = "pending"

    def add(self, product: str, quantity: int, price: Decimal) -> None:
        old_quantity, old_price = self.lines.get(product, (0, price))
        self.lines[product] = (old_quantity + quantity, old_price)

    def rule_broken_by(self, command: OrderCommand) -> str | None:
        """Return the rule the command breaks, or None if it is accepted."""
        if self.status != "pending":
            return "order_not_pending"
        if isinstance(command, AddOrderItem):
            line = self.lines.get(command.product_id)
            return "price_mismatch" if line and line[1] != command.price else None
        if isinstance(command, RemoveOrderItem):
            if command.product_id not in self.lines:
                return "item_not_in_order"
            return "last_item" if len(self.lines) == 1 else None
        return None

    def accept(self, command: OrderCommand) -> None:
        if isinstance(command, AddOrderItem):
            self.add(command.product_id, command.quantity, command.price)
        elif isinstance(command, RemoveOrderItem):
            del self.lines[command.product_id]
        elif isinstance(command, ShipOrder):
            self.status = "shipped"
        elif isinstance(command, CancelOrder):
            self.status = "cancelled"

    def items(self) -> tuple[OrderItem, ...]:
        return tuple(
            OrderItem(product_id=product, quantity=quantity, price=price)
            for product, (quantity, price) in self.lines.items()
        )

    def total(self) -> Decimal:
        return sum((quantity * price for quantity, price in self.lines.values()), Decimal(0))


@st.composite
def _scenarios(
    draw: st.DrawFn,
) -> tuple[list[tuple[str, int, Decimal]], list[OrderCommand]]:
    catalogue = {product: draw(_prices) for product in PRODUCTS}
    products = st.sampled_from(PRODUCTS)
    quantities = st.integers(min_value=1, max_value=50)
    first = draw(
        st.lists(st.tuples(products, quantities), min_size=1, max_size=5).map(
            lambda pairs: [(product, quantity, catalogue[product]) for product, quantity in pairs]
        )
    )
    add = st.builds(
        lambda product, quantity, price: AddOrderItem(
            order_id=ORDER_ID, product_id=product, quantity=quantity, price=price
        ),
        products,
        quantities,
        # Usually the catalogue price (accepted), sometimes another one (price_mismatch).
        st.one_of(products.map(catalogue.__getitem__), _prices),
    )
    remove = products.map(lambda product: RemoveOrderItem(order_id=ORDER_ID, product_id=product))
    ship = st.just(ShipOrder(order_id=ORDER_ID))
    cancel = (
        st.text(min_size=1, max_size=10)
        .filter(str.strip)
        .map(lambda reason: CancelOrder(order_id=ORDER_ID, reason=reason))
    )
    rest = draw(
        st.lists(
            st.one_of(add, add, remove, remove, ship, cancel),
            max_size=25,
        )
    )
    return first, rest


@settings(max_examples=80, deadline=None)
@given(scenario=_scenarios())
def test_random_command_sequences_agree_with_a_simple_model_and_with_replay(
    scenario: tuple[list[tuple[str, int, Decimal]], list[OrderCommand]],
) -> None:
    first, rest = scenario
    model = Model(first)
    lines = [OrderItem(product_id=p, quantity=q, price=price) for p, q, price in first]
    events = list(ORDERS.decide(ORDERS.initial(), create(*lines), NOW))
    assert len(events) == 1
    state = ORDERS.evolve(ORDERS.initial(), events[0])
    assert state.items == model.items()
    assert order_total(state.items) == model.total()
    for step, command in enumerate(rest):
        now = NOW + timedelta(minutes=step + 1)
        rule = model.rule_broken_by(command)
        if rule is not None:
            before = snapshot(state)
            business_rejection(state, command, rule)
            assert snapshot(state) == before
            continue
        new_events = ORDERS.decide(state, command, now)
        assert len(new_events) == 1
        events.extend(new_events)
        state = ORDERS.evolve(state, new_events[0])
        model.accept(command)
        assert state.status == model.status
        assert state.items == model.items()
        assert order_total(state.items) == model.total()
        assert sum(line.quantity for line in state.items) == sum(
            quantity for quantity, _ in model.lines.values()
        )
        assert len(state.items) >= 1

    replayed = ORDERS.initial()
    for event in events:
        replayed = ORDERS.evolve(replayed, event)
    assert replayed == state
    decoded = msgspec.msgpack.decode(snapshot(replayed), type=OrderState)
    assert decoded == state


def test_a_price_with_more_than_six_decimal_places_is_invalid_so_totals_stay_exact() -> None:
    error = invalid(OrderState(), create(item(price="0.1234567")), "price_precision")
    assert "decimal places" in str(error)
    accepted = apply(OrderState(), create(item(price="0.123456", quantity=3)))
    assert order_total(accepted.items) == Decimal("0.370368")
