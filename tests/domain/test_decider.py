from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from domain import Command, Decider
from domain.orders import (
    ORDERS,
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderCommand,
    OrderDecider,
    OrderEvent,
    OrderItem,
    OrderState,
    RemoveOrderItem,
    ShipOrder,
)

# The structural check proper: mypy --strict rejects this line if OrderDecider stops matching.
DECIDER: Decider[OrderCommand, msgspec.Struct, OrderState] = ORDERS

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ADDRESS = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")


def _all_commands() -> list[OrderCommand]:
    return [
        CreateOrder(
            customer_id="c-1",
            items=[OrderItem(product_id="p-1", quantity=1, price=Decimal(1))],
            shipping_address=ADDRESS,
        ),
        AddOrderItem(order_id="o-1", product_id="p-1", quantity=1, price=Decimal(1)),
        RemoveOrderItem(order_id="o-1", product_id="p-1"),
        ShipOrder(order_id="o-1"),
        CancelOrder(order_id="o-1", reason="changed my mind"),
    ]


def test_the_order_decider_is_usable_through_the_protocol() -> None:
    state = DECIDER.initial()
    command = CreateOrder(
        order_id="o-1",
        customer_id="c-1",
        items=[OrderItem(product_id="p-1", quantity=2, price=Decimal("3.50"))],
        shipping_address=ADDRESS,
    )
    for event in DECIDER.decide(state, command, NOW):
        state = DECIDER.evolve(state, event)
    assert state.status == "pending"
    assert DECIDER.aggregate_id(command) == "o-1"


def test_the_order_decider_describes_its_aggregate_type() -> None:
    assert ORDERS.stream_type == "order"
    assert isinstance(ORDERS, OrderDecider)
    assert ORDERS.state_type is OrderState
    assert isinstance(ORDERS.initial(), ORDERS.state_type)
    assert ORDERS.state_schema_version >= 1


def test_the_order_decider_handles_every_order_command_type() -> None:
    assert set(ORDERS.command_types) == {type(command) for command in _all_commands()}


def test_every_event_type_is_a_struct_with_a_distinct_explicit_tag() -> None:
    tags = []
    for event_type in ORDERS.event_types:
        assert issubclass(event_type, msgspec.Struct)
        info = msgspec.inspect.type_info(event_type)
        assert isinstance(info, msgspec.inspect.StructType)
        assert info.tag == event_type.__name__
        tags.append(info.tag)
    assert len(set(tags)) == len(tags) == 5


def test_every_command_type_has_a_distinct_tag() -> None:
    tags = set()
    for command_type in ORDERS.command_types:
        info = msgspec.inspect.type_info(command_type)
        assert isinstance(info, msgspec.inspect.StructType)
        tags.add(info.tag)
    assert len(tags) == len(ORDERS.command_types)


def test_every_order_command_satisfies_the_command_protocol() -> None:
    for command in _all_commands():
        assert isinstance(command, Command)
        assert command.command_id
        assert command.expected_version is None


def test_every_order_command_gets_a_fresh_command_id_by_default() -> None:
    first, second = ShipOrder(order_id="o-1"), ShipOrder(order_id="o-1")
    assert first.command_id != second.command_id


def test_create_order_gets_a_fresh_order_id_by_default() -> None:
    first, second = _all_commands()[0], _all_commands()[0]
    assert isinstance(first, CreateOrder)
    assert isinstance(second, CreateOrder)
    assert first.order_id
    assert first.order_id != second.order_id


def test_the_aggregate_id_of_every_command_is_its_order_id() -> None:
    for command in _all_commands()[1:]:
        assert ORDERS.aggregate_id(command) == "o-1"


def test_the_state_type_round_trips_through_msgpack_for_snapshots() -> None:
    state = ORDERS.initial()
    command = CreateOrder(
        order_id="o-1",
        customer_id="c-1",
        items=[OrderItem(product_id="p-1", quantity=2, price=Decimal("3.50"))],
        shipping_address=ADDRESS,
    )
    for event in ORDERS.decide(state, command, NOW):
        state = ORDERS.evolve(state, event)
    encoded = msgspec.msgpack.encode(state)
    assert msgspec.msgpack.decode(encoded, type=ORDERS.state_type) == state


def test_every_event_round_trips_through_msgpack_as_the_tagged_union() -> None:
    decoder = msgspec.msgpack.Decoder(OrderEvent)
    state = ORDERS.initial()
    commands: list[OrderCommand] = [
        CreateOrder(
            order_id="o-1",
            customer_id="c-1",
            items=[
                OrderItem(product_id="p-1", quantity=1, price=Decimal("1.10")),
                OrderItem(product_id="p-2", quantity=1, price=Decimal(2)),
            ],
            shipping_address=ADDRESS,
        ),
        AddOrderItem(order_id="o-1", product_id="p-3", quantity=4, price=Decimal("0.01")),
        RemoveOrderItem(order_id="o-1", product_id="p-2"),
        CancelOrder(order_id="o-1", reason="duplicate"),
    ]
    seen = []
    for command in commands:
        for event in ORDERS.decide(state, command, NOW):
            assert decoder.decode(msgspec.msgpack.encode(event)) == event
            seen.append(type(event))
            state = ORDERS.evolve(state, event)
    shipped = ORDERS.decide(
        ORDERS.evolve(ORDERS.initial(), ORDERS.decide(ORDERS.initial(), commands[0], NOW)[0]),
        ShipOrder(order_id="o-1"),
        NOW,
    )[0]
    assert decoder.decode(msgspec.msgpack.encode(shipped)) == shipped
    seen.append(type(shipped))
    assert set(seen) == set(ORDERS.event_types)
