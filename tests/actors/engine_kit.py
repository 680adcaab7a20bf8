"""Helpers for the write-side tests: command builders, a tiny second aggregate, store wrappers.

The ``Counter`` decider is deliberately unlike orders (integer state, two event types, a command
that can emit no event at all) to prove that the engine's runtime knows nothing about orders.
The store wrappers are fault-injection seams around the *real* store (``store_wrapper=``): they
delegate every call and only add a failure or a wait around ``append_batch``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgspec

from actors import Engine
from actors._aggregate import AggregateActor
from domain.errors import AggregateNotFound, CommandRejected, EngineError
from domain.orders import (
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderItem,
    RemoveOrderItem,
    ShipOrder,
)
from store import (
    CommandRecord,
    Committed,
    EventStore,
    RecordedEvent,
    Snapshot,
    StreamAppend,
)

TIMEOUT: Final = 10.0
ADDRESS: Final = Address(street="1 Main St", city="Springfield", postal_code="12345", country="US")


def new_id() -> str:
    """Return a fresh unique id."""
    return str(uuid.uuid4())


# ---------------------------------------------------------------- order command builders


def create(
    order_id: Any, *, customer_id: Any = "alice", price: str = "2.50", **kwargs: Any
) -> CreateOrder:
    """Build a CreateOrder with one item ("apple" x1 at ``price``)."""
    items = [OrderItem(product_id="apple", quantity=1, price=Decimal(price))]
    return CreateOrder(
        customer_id=customer_id,
        items=items,
        shipping_address=ADDRESS,
        order_id=order_id,
        **kwargs,
    )


def add(
    order_id: str,
    product_id: Any = "pear",
    quantity: Any = 1,
    price: Any = Decimal("1.00"),
    **kwargs: Any,
) -> AddOrderItem:
    """Build an AddOrderItem (1 unit at 1.00 by default; any types, to test bad input)."""
    return AddOrderItem(
        order_id=order_id, product_id=product_id, quantity=quantity, price=price, **kwargs
    )


def remove(order_id: str, product_id: str, **kwargs: Any) -> RemoveOrderItem:
    """Build a RemoveOrderItem."""
    return RemoveOrderItem(order_id=order_id, product_id=product_id, **kwargs)


def ship(order_id: str, **kwargs: Any) -> ShipOrder:
    """Build a ShipOrder."""
    return ShipOrder(order_id=order_id, **kwargs)


def cancel(order_id: str, reason: str = "changed my mind", **kwargs: Any) -> CancelOrder:
    """Build a CancelOrder."""
    return CancelOrder(order_id=order_id, reason=reason, **kwargs)


# ---------------------------------------------------------------- a second aggregate type


class Increment(msgspec.Struct, kw_only=True):
    """Add ``by`` (>= 1) to a counter, creating it if needed."""

    counter_id: str
    by: int = 1
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class Reset(msgspec.Struct, kw_only=True):
    """Set an existing counter back to zero (no event if it already is zero)."""

    counter_id: str
    command_id: str = msgspec.field(default_factory=new_id)
    expected_version: int | None = None


class Incremented(msgspec.Struct, frozen=True, kw_only=True, tag="test.CounterIncremented"):
    """A counter went up by ``by``."""

    counter_id: str
    by: int


class WasReset(msgspec.Struct, frozen=True, kw_only=True, tag="test.CounterReset"):
    """A counter went back to zero."""

    counter_id: str


class CounterState(msgspec.Struct, frozen=True, kw_only=True):
    """A counter: ``exists`` once incremented, its ``value`` and how many resets it saw."""

    exists: bool = False
    value: int = 0
    resets: int = 0


class CounterDecider:
    """A tiny aggregate type implementing the Decider protocol."""

    stream_type: str = "counter"
    command_types: tuple[type, ...] = (Increment, Reset)
    event_types: tuple[type[msgspec.Struct], ...] = (Incremented, WasReset)
    state_type: type[CounterState] = CounterState
    state_schema_version: int = 1

    def initial(self) -> CounterState:
        """Return a counter that does not exist yet."""
        return CounterState()

    def aggregate_id(self, command: Increment | Reset) -> str:
        """Return the counter's id."""
        return command.counter_id

    def decide(
        self, state: CounterState, command: Increment | Reset, now: datetime
    ) -> Sequence[msgspec.Struct]:
        """Check the command against the counter; return its events."""
        del now  # the counter keeps no time
        if isinstance(command, Increment):
            if isinstance(command.by, bool) or not isinstance(command.by, int) or command.by < 1:
                raise CommandRejected(command.counter_id, "by_below_one", "by must be >= 1")
            return (Incremented(counter_id=command.counter_id, by=command.by),)
        if not state.exists:
            raise AggregateNotFound(command.counter_id, "counter")
        if state.value == 0:
            return ()
        return (WasReset(counter_id=command.counter_id),)

    def evolve(self, state: CounterState, event: msgspec.Struct) -> CounterState:
        """Return the counter after ``event``."""
        if isinstance(event, Incremented):
            return CounterState(exists=True, value=state.value + event.by, resets=state.resets)
        if isinstance(event, WasReset):
            return CounterState(exists=True, value=0, resets=state.resets + 1)
        return state


COUNTER: Final = CounterDecider()


# ---------------------------------------------------------------- store wrappers (fault seams)


class DelegatingStore:
    """Passes every write-side call to the real store; subclasses add faults."""

    def __init__(self, store: EventStore | DelegatingStore) -> None:
        self.store = store
        self.calls = 0
        self._lock = threading.Lock()

    def append_batch(self, appends: Sequence[StreamAppend]) -> list[Committed | EngineError]:
        """Count the call, then append through the real store."""
        with self._lock:
            self.calls += 1
            call = self.calls
        self.before_append(call, appends)
        return self.store.append_batch(appends)

    def before_append(self, call: int, appends: Sequence[StreamAppend]) -> None:
        """Hook run before the real append (``call`` counts from 1)."""

    def lookup_command(self, command_id: str) -> CommandRecord | None:
        """Delegate."""
        return self.store.lookup_command(command_id)

    def read_stream(
        self, stream_id: str, from_version: int = 1, *, stream_type: str
    ) -> list[RecordedEvent]:
        """Delegate."""
        return self.store.read_stream(stream_id, from_version, stream_type=stream_type)

    def read_all(
        self, from_position: int = 1, batch_size: int = 1000, *, tags: frozenset[str] | None = None
    ) -> Iterator[list[RecordedEvent]]:
        """Delegate."""
        return self.store.read_all(from_position, batch_size, tags=tags)

    def head(self) -> int:
        """Delegate."""
        return self.store.head()

    def load_snapshot(self, stream_id: str, *, stream_type: str) -> Snapshot | None:
        """Delegate."""
        return self.store.load_snapshot(stream_id, stream_type=stream_type)

    def stream_version(self, stream_id: str, *, stream_type: str) -> int:
        """Delegate."""
        return self.store.stream_version(stream_id, stream_type=stream_type)


class InjectedFault(RuntimeError):
    """The failure a FailingStore raises (not an EngineError: an unexpected one)."""


class FailingStore(DelegatingStore):
    """Raises :class:`InjectedFault` on the given ``append_batch`` calls (1-based), writing nothing.

    ``on_fail`` runs just before raising (e.g. to record which appends were in the batch).
    """

    def __init__(
        self,
        store: EventStore | DelegatingStore,
        fail_on: set[int],
        on_fail: Callable[[Sequence[StreamAppend]], None] | None = None,
    ) -> None:
        super().__init__(store)
        self.fail_on = fail_on
        self.failed: list[list[StreamAppend]] = []
        self._on_fail = on_fail

    def before_append(self, call: int, appends: Sequence[StreamAppend]) -> None:
        """Raise on the chosen calls."""
        if call in self.fail_on:
            self.failed.append(list(appends))
            if self._on_fail is not None:
                self._on_fail(appends)
            raise InjectedFault(f"injected failure on append_batch call {call}")


class GatedStore(DelegatingStore):
    """Holds every ``append_batch`` until ``gate`` is set (a slow disk under test control)."""

    def __init__(self, store: EventStore | DelegatingStore, gate: threading.Event) -> None:
        super().__init__(store)
        self.gate = gate
        self.waiting = threading.Event()  # set once a batch is held at the gate

    def before_append(self, call: int, appends: Sequence[StreamAppend]) -> None:
        """Wait for the gate (bounded: a test that forgets to open it fails, it does not hang)."""
        del call, appends
        self.waiting.set()
        if not self.gate.wait(60):
            raise InjectedFault("the test never opened the gate")


class FlakyReads(DelegatingStore):
    """Raises :class:`InjectedFault` on the given ``read_stream`` calls (1-based)."""

    def __init__(self, store: EventStore | DelegatingStore, fail_reads: set[int]) -> None:
        super().__init__(store)
        self.fail_reads = fail_reads
        self.reads = 0

    def read_stream(
        self, stream_id: str, from_version: int = 1, *, stream_type: str
    ) -> list[RecordedEvent]:
        """Fail the chosen calls, delegate the others."""
        with self._lock:
            self.reads += 1
            call = self.reads
        if call in self.fail_reads:
            raise InjectedFault(f"injected failure on read_stream call {call}")
        return self.store.read_stream(stream_id, from_version, stream_type=stream_type)


# ---------------------------------------------------------------- engine and log helpers


@contextmanager
def open_engine(path: Path, **options: Any) -> Iterator[Engine]:
    """Open an engine without views (unless given) in async durability; always close it."""
    options.setdefault("views", [])
    options.setdefault("durability", "async")
    engine = Engine.open(path, **options)
    try:
        yield engine
    finally:
        engine.close()


def all_events(store: EventStore) -> list[RecordedEvent]:
    """Return the whole log."""
    return [event for batch in store.read_all() for event in batch]


def assert_log_contiguous(store: EventStore) -> dict[str, list[RecordedEvent]]:
    """Check positions 1..head and per-stream versions 1..n; return the events per stream id.

    Streams are keyed by (type, id) and checked so; the answer is keyed by id alone, so it
    also asserts that no id is used by two aggregate types (tests that do that look deeper).
    """
    events = all_events(store)
    assert [event.position for event in events] == list(range(1, store.head() + 1))
    streams: dict[tuple[str, str], list[RecordedEvent]] = {}
    for event in events:
        streams.setdefault((event.stream_type, event.stream_id), []).append(event)
    for (stream_type, stream_id), stream in streams.items():
        assert [event.version for event in stream] == list(range(1, len(stream) + 1)), stream_id
        assert store.stream_version(stream_id, stream_type=stream_type) == len(stream)
    by_id = {stream_id: stream for (_, stream_id), stream in streams.items()}
    assert len(by_id) == len(streams), "an id is used by two aggregate types"
    return by_id


def replay(decider: Any, events: Sequence[RecordedEvent]) -> Any:
    """Fold recorded events through ``decider.evolve`` from its initial state."""
    state = decider.initial()
    for recorded in events:
        state = decider.evolve(state, recorded.event)
    return state


def live_state(engine: Engine, decider: Any, aggregate_id: str) -> tuple[Any, int]:
    """Return (state, version) of a live aggregate actor, after everything sent to it so far."""
    registry = next(r for r in engine._registries if r.decider is decider)
    entry = registry._index.get(aggregate_id)
    assert entry is not None, f"{aggregate_id} is not live"
    # An unknown message is a no-op: its answer means every earlier message has been handled.
    entry.ref.ask("barrier", timeout=TIMEOUT)
    actor = entry.ref._actor_weakref()
    assert isinstance(actor, AggregateActor)
    return actor._state, actor._version
