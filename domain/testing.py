"""A given/when/then kit for deciders: test the pure write model without an engine.

Given some past events, when a command arrives, then these events (or this rejection)::

    from domain.testing import given
    from domain.orders import ORDERS, OrderShipped, ShipOrder

    given(created, decider=ORDERS).when(ShipOrder(order_id="o-1")).then(
        OrderShipped(order_id="o-1", shipped_at=FIXED_NOW)
    )
    given(created, shipped, decider=ORDERS).when(ShipOrder(order_id="o-1")).then_rejects(
        CommandRejected, rule="order_not_pending"
    )

For many tests of one decider, bind it once: ``given = for_decider(ORDERS, now=NOW)``.

The kit runs only the decider's pure functions: ``initial()``, ``evolve`` over the given events,
``decide(state, command, now)`` with a fixed clock (:data:`FIXED_NOW` unless told), then
``evolve`` over the new events (so an event the decider emits but cannot fold fails the test).
A failed expectation raises ``AssertionError`` whose message shows the command, the expected and
the actual events one per line, and the first difference (down to the field). It needs no test
framework; under pytest its own frames are hidden from tracebacks.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from domain.decider import Decider

__all__ = ["FIXED_NOW", "Given", "GivenFactory", "Outcome", "When", "for_decider", "given"]

FIXED_NOW: Final = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
"""The time every ``decide`` of the kit sees unless a scenario says otherwise."""

StateT = TypeVar("StateT")


def _fail(message: str) -> AssertionError:
    return AssertionError(message)


def _listed(events: Sequence[object]) -> str:
    if not events:
        return "  (no events)"
    return "\n".join(f"  {number}. {event!r}" for number, event in enumerate(events, 1))


def _field_names(value: object) -> tuple[str, ...]:
    names = getattr(type(value), "__struct_fields__", None)  # a msgspec Struct
    if isinstance(names, tuple):
        return names
    if dataclasses.is_dataclass(value):
        return tuple(field.name for field in dataclasses.fields(value))
    return ()


def _first_difference(expected: Sequence[object], actual: Sequence[object]) -> str:
    for number, (want, got) in enumerate(zip(expected, actual, strict=False), 1):
        if want == got:
            continue
        if type(want) is not type(got):
            return f"event {number}: expected a {type(want).__name__}, got a {type(got).__name__}"
        for name in _field_names(want):
            wanted, gotten = getattr(want, name), getattr(got, name)
            if wanted != gotten:
                return (
                    f"event {number} ({type(want).__name__}), field {name!r}: "
                    f"expected {wanted!r}, got {gotten!r}"
                )
        return f"event {number} ({type(want).__name__}) differs"
    return f"expected {len(expected)} event(s), got {len(actual)}"


@dataclasses.dataclass(frozen=True)
class Outcome(Generic[StateT]):
    """What an accepted command did.

    Attributes:
        events: The events ``decide`` returned, in order.
        state: The state after the given events and these events.
    """

    events: tuple[Any, ...]
    state: StateT


class When(Generic[StateT]):
    """A command decided against the given events; check the result with ``then*``."""

    def __init__(
        self,
        decider: Decider[Any, Any, StateT],
        history: tuple[Any, ...],
        state: StateT,
        command: object,
        now: datetime,
    ) -> None:
        self._decider = decider
        self._history = history
        self._state = state
        self._command = command
        self._now = now
        self._events: tuple[Any, ...] = ()
        self._error: Exception | None = None
        try:
            self._events = tuple(decider.decide(state, command, now))
        except Exception as error:  # noqa: BLE001 - kept for then_rejects, or shown by then
            self._error = error

    def _scene(self) -> str:
        return (
            f"given {len(self._history)} event(s), when {self._command!r} "
            f"at {self._now.isoformat()}"
        )

    def then(self, *expected: object) -> Outcome[StateT]:
        """Assert the command was accepted with exactly ``expected`` (none: no events).

        Returns:
            The events and the state after them, for further checks.

        Raises:
            AssertionError: The command was rejected, gave other events, or its events do not
                fold (``evolve`` raised).
        """
        __tracebackhide__ = True  # pytest: show the test's line, not the kit's
        if self._error is not None:
            error = self._error
            raise _fail(
                f"{self._scene()}:\nexpected events:\n{_listed(expected)}\n"
                f"but the command was rejected: {type(error).__name__}: {error}"
            ) from error
        if self._events != expected:
            raise _fail(
                f"{self._scene()}:\nexpected events:\n{_listed(expected)}\n"
                f"actual events:\n{_listed(self._events)}\n"
                f"first difference: {_first_difference(expected, self._events)}"
            )
        state = self._state
        for number, event in enumerate(self._events, 1):
            try:
                state = self._decider.evolve(state, event)
            except Exception as error:
                raise _fail(
                    f"{self._scene()}: event {number} ({event!r}) was decided but evolve "
                    f"raised {type(error).__name__}: {error}"
                ) from error
        return Outcome(self._events, state)

    def then_rejects(
        self,
        error_type: type[Exception],
        *,
        match: str | None = None,
        exact: bool = False,
        **attributes: object,
    ) -> Exception:
        """Assert the command was refused with ``error_type`` (and nothing was decided).

        Args:
            error_type: The error class expected (a subclass matches unless ``exact``).
            match: A regular expression the error's message must contain (``re.search``).
            exact: Require exactly ``error_type``, not a subclass (e.g. ``CommandRejected``
                but not its subclass ``InvalidCommand``).
            **attributes: Attribute values the error must carry (``rule="last_item"``).

        Returns:
            The error, for further checks.

        Raises:
            AssertionError: The command was accepted, or refused otherwise.
        """
        __tracebackhide__ = True  # pytest: show the test's line, not the kit's
        wanted = f"{'exactly ' if exact else ''}{error_type.__name__}"
        error = self._error
        if error is None:
            raise _fail(
                f"{self._scene()}:\nexpected a rejection with {wanted}\n"
                f"but the command was accepted with events:\n{_listed(self._events)}"
            )
        actual = f"{type(error).__name__}: {error}"
        if not isinstance(error, error_type) or (exact and type(error) is not error_type):
            raise _fail(
                f"{self._scene()}:\nexpected a rejection with {wanted}\nbut got {actual}"
            ) from error
        for name, value in attributes.items():
            if not hasattr(error, name):
                raise _fail(f"{self._scene()}:\n{actual}\nhas no attribute {name!r}") from error
            if getattr(error, name) != value:
                raise _fail(
                    f"{self._scene()}:\n{actual}\n{type(error).__name__}.{name}: expected "
                    f"{value!r}, got {getattr(error, name)!r}"
                ) from error
        if match is not None and re.search(match, str(error)) is None:
            raise _fail(
                f"{self._scene()}:\n{actual}\nits message does not match {match!r}"
            ) from error
        return error


class Given(Generic[StateT]):
    """An aggregate's past: its state after the given events."""

    def __init__(
        self, decider: Decider[Any, Any, StateT], events: tuple[Any, ...], now: datetime
    ) -> None:
        __tracebackhide__ = True  # pytest: show the test's line, not the kit's
        self._decider = decider
        self._events = events
        self._now = now
        state = decider.initial()
        for number, event in enumerate(events, 1):
            try:
                state = decider.evolve(state, event)
            except Exception as error:
                raise _fail(
                    f"given event {number} ({event!r}) does not fold: evolve raised "
                    f"{type(error).__name__}: {error}"
                ) from error
        self.state: StateT = state
        """The state after the given events."""

    def when(self, command: object, *, now: datetime | None = None) -> When[StateT]:
        """Decide ``command`` against the state, at ``now`` (default: the scenario's time)."""
        return When(self._decider, self._events, self.state, command, now or self._now)


def given(
    *events: object, decider: Decider[Any, Any, StateT], now: datetime = FIXED_NOW
) -> Given[StateT]:
    """Start a scenario: ``decider``'s aggregate after ``events`` (none: a new aggregate).

    Args:
        *events: Past events of one aggregate, oldest first.
        decider: The decider under test.
        now: The time ``decide`` sees (fixed, so tests never depend on the clock).

    Raises:
        AssertionError: A given event does not fold (``evolve`` raised).
    """
    __tracebackhide__ = True  # pytest: show the test's line, not the kit's
    return Given(decider, events, now)


class GivenFactory(Generic[StateT]):
    """:func:`given` bound to one decider and clock; see :func:`for_decider`."""

    def __init__(self, decider: Decider[Any, Any, StateT], now: datetime) -> None:
        self.decider = decider
        self.now = now

    def __call__(self, *events: object) -> Given[StateT]:
        """Start a scenario after ``events``."""
        __tracebackhide__ = True  # pytest: show the test's line, not the kit's
        return Given(self.decider, events, self.now)


def for_decider(
    decider: Decider[Any, Any, StateT], *, now: datetime = FIXED_NOW
) -> GivenFactory[StateT]:
    """Bind :func:`given` to one decider and clock.

    Example: ``given = for_decider(ORDERS)``, then ``given(*events).when(command).then(...)``.
    """
    return GivenFactory(decider, now)
