"""Bad input at the Python door: every malformed command or query gets a typed EngineError with a
short, clear message, never another exception type, and the log stays byte for byte the same."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from reliability_kit import ADDRESS, command_for

from actors import CommandTimeout, Engine, EngineError, InvalidCommand
from domain.orders import (
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)
from views.orders import GetCustomerOrders, GetOrderById, SearchOrders

HUGE = "x" * 10_000_000
EXISTING = "in-t0-o0"  # created by command_for("in.0.0.0"), holds product p0 at 1.25
MAX_MESSAGE = 1000


class Stranger(msgspec.Struct):
    order_id: str = "in-t0-o0"
    command_id: str = "stranger"


def item(**changes: Any) -> OrderItem:
    fields: dict[str, Any] = {"product_id": "p1", "quantity": 1, "price": Decimal("2.25")}
    fields.update(changes)
    return OrderItem(**fields)


def create(**changes: Any) -> CreateOrder:
    fields: dict[str, Any] = {
        "customer_id": "c-1",
        "items": [item()],
        "shipping_address": ADDRESS,
        "order_id": "fresh",
    }
    fields.update(changes)
    return CreateOrder(**fields)


def add(**changes: Any) -> AddOrderItem:
    fields: dict[str, Any] = {
        "order_id": EXISTING,
        "product_id": "p1",
        "quantity": 1,
        "price": Decimal("2.25"),
    }
    fields.update(changes)
    return AddOrderItem(**fields)


BAD_COMMANDS: dict[str, Callable[[], Any]] = {
    "none": lambda: None,
    "int": lambda: 42,
    "str": lambda: "CreateOrder",
    "object": object,
    "dict": lambda: {"order_id": EXISTING},
    "a query": lambda: GetOrderById(EXISTING),
    "a foreign struct": Stranger,
    "the class itself": lambda: CreateOrder,
    "order_id None": lambda: create(order_id=None),
    "order_id int": lambda: create(order_id=123),
    "order_id empty": lambda: create(order_id=""),
    "order_id 10 MB": lambda: create(order_id=HUGE),
    "order_id NUL": lambda: create(order_id="a\x00b"),
    "order_id bytes": lambda: create(order_id=b"raw"),
    "customer None": lambda: create(customer_id=None),
    "customer blank": lambda: create(customer_id="   "),
    "customer 10 MB": lambda: create(customer_id=HUGE),
    "items None": lambda: create(items=None),
    "items str": lambda: create(items="abc"),
    "items empty": lambda: create(items=[]),
    "items [None]": lambda: create(items=[None]),
    "items dict": lambda: create(items=[{"product_id": "p", "quantity": 1, "price": 1}]),
    "100k items": lambda: create(items=[item(product_id=f"p{i}") for i in range(100_000)]),
    "quantity 0": lambda: create(items=[item(quantity=0)]),
    "quantity negative": lambda: create(items=[item(quantity=-5)]),
    "quantity 10**100": lambda: create(items=[item(quantity=10**100)]),
    "quantity 10**5000": lambda: create(items=[item(quantity=10**5000)]),
    "quantity str": lambda: create(items=[item(quantity="3")]),
    "quantity float": lambda: create(items=[item(quantity=2.5)]),
    "quantity bool": lambda: create(items=[item(quantity=True)]),
    "price float": lambda: create(items=[item(price=1.5)]),
    "price NaN": lambda: create(items=[item(price=Decimal("NaN"))]),
    "price sNaN": lambda: create(items=[item(price=Decimal("sNaN"))]),
    "price infinite": lambda: create(items=[item(price=Decimal("Infinity"))]),
    "price negative": lambda: create(items=[item(price=Decimal(-1))]),
    "price 1e1000000": lambda: create(items=[item(price=Decimal("1e1000000"))]),
    "price str": lambda: create(items=[item(price="9.99")]),
    "price None": lambda: create(items=[item(price=None)]),
    "product None": lambda: create(items=[item(product_id=None)]),
    "product 10 MB": lambda: create(items=[item(product_id=HUGE)]),
    "address None": lambda: create(shipping_address=None),
    "address str": lambda: create(shipping_address="1 Main St"),
    "address None city": lambda: create(
        shipping_address=Address(street="s", city=None, postal_code="p", country="c")  # type: ignore[arg-type]
    ),
    "address 10 MB": lambda: create(
        shipping_address=Address(street=HUGE, city="c", postal_code="p", country="c")
    ),
    "command_id None": lambda: create(command_id=None),
    "command_id empty": lambda: create(command_id=""),
    "command_id 10 MB": lambda: create(command_id=HUGE),
    "command_id int": lambda: create(command_id=5),
    "command_id surrogate": lambda: create(command_id="\udfff"),
    "expected_version -1": lambda: create(expected_version=-1),
    "expected_version str": lambda: create(expected_version="0"),
    "expected_version bool": lambda: create(expected_version=True),
    "expected_version float": lambda: create(expected_version=0.0),
    "expected_version 10**30": lambda: create(expected_version=10**30),
    "create existing": lambda: create(order_id=EXISTING),
    "add unknown order": lambda: add(order_id="nobody"),
    "add price mismatch": lambda: add(product_id="p0", price=Decimal("9.99")),
    "add quantity 10**9": lambda: add(quantity=10**9),
    "add price float": lambda: add(price=0.1),
    "add product 10 MB": lambda: add(product_id=HUGE),
    "remove missing product": lambda: RemoveOrderItem(order_id=EXISTING, product_id="p6"),
    "remove last item": lambda: RemoveOrderItem(order_id=EXISTING, product_id="p0"),
    "remove product None": lambda: RemoveOrderItem(order_id=EXISTING, product_id=None),  # type: ignore[arg-type]
    "ship order_id list": lambda: ShipOrder(order_id=[EXISTING]),  # type: ignore[arg-type]
    "cancel reason empty": lambda: CancelOrder(order_id=EXISTING, reason=""),
    "cancel reason 10 MB": lambda: CancelOrder(order_id=EXISTING, reason=HUGE),
    "cancel reason None": lambda: CancelOrder(order_id=EXISTING, reason=None),  # type: ignore[arg-type]
}

# Found by this campaign (ids that could never be stored as UTF-8 keys); fixed in _check_id.
KNOWN_BUGS: dict[str, Callable[[], Any]] = {
    "order_id surrogate": lambda: create(order_id="\ud800"),
    "add to order_id surrogate": lambda: add(order_id="\udfff"),
}

BAD_QUERIES: dict[str, Callable[[], Any]] = {
    "none": lambda: None,
    "str": lambda: "GetOrderById",
    "a command": lambda: command_for("in.0.0.1"),
    "order_id None": lambda: GetOrderById(None),  # type: ignore[arg-type]
    "page 0": lambda: GetCustomerOrders("c", page=0),
    "page_size 10**9": lambda: GetCustomerOrders("c", page_size=10**9),
    "page str": lambda: SearchOrders(page="1"),  # type: ignore[arg-type]
    "sort_by": lambda: SearchOrders(sort_by="price; DROP TABLE"),
    "status": lambda: SearchOrders(status="lost"),
    "min_total str": lambda: SearchOrders(min_total="abc"),  # type: ignore[arg-type]
    "min_total NaN": lambda: SearchOrders(min_total=Decimal("NaN")),
    "max_total float": lambda: SearchOrders(max_total=float("inf")),  # type: ignore[arg-type]
}


def data_bytes(path: Path) -> str:
    return hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    with Engine.open(tmp_path / "data") as opened:
        opened.execute(command_for("in.0.0.0"))
        assert opened.wait_for_views()
        yield opened


def submit_and_wait(engine: Engine, command: Any) -> Any:
    return engine.submit(command).get(timeout=10)


def run_async(engine: Engine, command: Any) -> Any:
    return asyncio.run(engine.execute_async(command))


def outcome(call: Callable[[], Any]) -> str:
    """'' if ``call`` raised a proper EngineError (or answered), else what went wrong."""
    try:
        call()
    except CommandTimeout:
        return "no answer: CommandTimeout (the command was lost, not refused)"
    except EngineError as error:
        message = str(error)
        if not message or len(message) > MAX_MESSAGE:
            return f"unclear message ({len(message)} chars)"
        return ""
    except BaseException as error:
        return f"{type(error).__module__}.{type(error).__name__}: {str(error)[:200]}"
    return "accepted"


def test_bad_commands_get_a_typed_engine_error_and_leave_the_log_unchanged(
    engine: Engine, tmp_path: Path
) -> None:
    head, before = engine.store.head(), data_bytes(tmp_path / "data")
    problems = {}
    for name, build in BAD_COMMANDS.items():
        command = build()
        problem = outcome(partial(engine.execute, command, timeout=3))
        if problem:
            problems[name] = problem
        assert engine.store.head() == head, f"{name} wrote to the log"
    assert problems == {}
    assert data_bytes(tmp_path / "data") == before
    assert engine.execute(command_for("in.0.0.1")).version == 2  # still serving


def test_ids_that_are_not_valid_unicode_get_an_engine_error(tmp_path: Path) -> None:
    engine = Engine.open(tmp_path / "data")
    try:
        engine.execute(command_for("in.0.0.0"))
        problems = {}
        for name, build in KNOWN_BUGS.items():
            for attempt in range(2):
                command = build()
                problem = outcome(partial(engine.execute, command, timeout=0.5))
                if problem:
                    problems[f"{name} #{attempt}"] = problem
        assert problems == {}
    finally:
        engine.close(timeout=0.5)  # with the bug, lost commands stay "in flight"


def test_bad_commands_through_submit_and_execute_async_get_engine_errors(engine: Engine) -> None:
    head = engine.store.head()
    problems = {}
    for name in ("none", "order_id 10 MB", "price float", "expected_version -1", "100k items"):
        command = BAD_COMMANDS[name]()
        via_submit = outcome(partial(submit_and_wait, engine, command))
        via_async = outcome(partial(run_async, engine, command))
        if via_submit or via_async:
            problems[name] = (via_submit, via_async)
    assert problems == {}
    assert engine.store.head() == head


def test_bad_queries_get_a_typed_engine_error(engine: Engine) -> None:
    problems = {}
    for name, build in BAD_QUERIES.items():
        query = build()
        problem = outcome(partial(engine.query, query))
        if problem:
            problems[name] = problem
    assert problems == {}


# Ids outside the one grammar (domain.ids), in every id field of the order commands.
BAD_IDS = {"slash": "a/b", "reserved": "search", "space": "a b", "non-ascii": "caf\u00e9", "": ""}


def _with_bad_id(bad: str) -> dict[str, Any]:
    return {
        "order_id": create(order_id=bad),
        "customer_id": create(customer_id=bad),
        "product_id": create(items=[item(product_id=bad)]),
        "command_id": create(command_id=bad),
        "add product_id": add(product_id=bad),
        "remove product_id": RemoveOrderItem(order_id=EXISTING, product_id=bad),
        "ship order_id": ShipOrder(order_id=bad),
    }


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
def test_every_id_at_the_python_door_follows_the_grammar(
    engine: Engine, tmp_path: Path, bad: str
) -> None:
    head, before = engine.store.head(), data_bytes(tmp_path / "data")
    for field, command in _with_bad_id(bad).items():
        for call in (engine.execute, partial(submit_and_wait, engine), partial(run_async, engine)):
            with pytest.raises(InvalidCommand) as caught:
                call(command)
            # The generic door names an aggregate's id "aggregate id" (it knows no field names).
            named = ("aggregate id", "order_id") if field.endswith("order_id") else (field,)
            message = str(caught.value)
            assert any(name.rsplit(" ", 1)[-1] in message for name in named), (field, message)
            assert caught.value.rule in {"invalid_id", "reserved_id", "empty_id"}
    assert engine.store.head() == head
    assert data_bytes(tmp_path / "data") == before
