"""Fail loudly if pykka's private actor-type seam, which actors/_dispatch.py relies on, changes.

Each test names one assumption. When one fails after a pykka upgrade, re-read pykka's _actor.py,
_ref.py and _threading.py and fix DispatcherActor before touching the test.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
from typing import Any

import pykka
import pytest
from pykka import ActorDeadError, ActorRegistry, ThreadingFuture, messages
from pykka._envelope import Envelope

TIMEOUT = 5.0


class ListInbox:
    """A passive inbox that records what the ref puts into it."""

    def __init__(self) -> None:
        self.items: list[Envelope[Any]] = []

    def put(self, envelope: Envelope[Any], /) -> None:
        self.items.append(envelope)

    def get(self) -> Envelope[Any]:
        return self.items.pop(0)

    def empty(self) -> bool:
        return not self.items


class SeamActor(pykka.Actor):
    """The smallest actor type: nothing runs it, the test drives the hooks by hand."""

    inboxes_created = 0
    loops_started = 0

    @staticmethod
    def _create_actor_inbox() -> ListInbox:
        SeamActor.inboxes_created += 1
        return ListInbox()

    @staticmethod
    def _create_future() -> ThreadingFuture[Any]:
        return ThreadingFuture()

    def _start_actor_loop(self) -> None:
        SeamActor.loops_started += 1

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    def on_start(self) -> None:
        self.log.append("on_start")

    def on_stop(self) -> None:
        self.log.append("on_stop")

    def on_receive(self, message: Any) -> Any:
        return ("received", message)

    def method(self, value: int) -> int:
        return value * 2


def inbox_of(actor: SeamActor) -> ListInbox:
    assert isinstance(actor.actor_inbox, ListInbox)
    return actor.actor_inbox


def test_pykka_is_the_pinned_minor_version() -> None:
    assert importlib.metadata.version("pykka").startswith("4.5.")


def test_the_seam_hooks_exist_with_the_expected_kinds() -> None:
    for name in ("_create_actor_inbox", "_create_future"):
        assert isinstance(inspect.getattr_static(pykka.Actor, name), staticmethod), name
    assert {"_create_actor_inbox", "_create_future", "_start_actor_loop"} <= (
        pykka.Actor.__abstractmethods__
    )
    for name, params in {
        "_start_actor_loop": ["self"],
        "_actor_loop_setup": ["self"],
        "_handle_receive": ["self", "message"],
        "_stop": ["self"],
        "_handle_failure": ["self", "exception_type", "exception_value", "traceback"],
    }.items():
        assert list(inspect.signature(getattr(pykka.Actor, name)).parameters) == params, name


def test_init_creates_the_inbox_and_the_ref_shares_it() -> None:
    before = SeamActor.inboxes_created
    actor = SeamActor()

    assert SeamActor.inboxes_created == before + 1
    assert actor.actor_ref.actor_inbox is actor.actor_inbox
    assert actor.actor_ref.actor_stopped is actor.actor_stopped


def test_start_registers_then_starts_the_loop() -> None:
    before = SeamActor.loops_started
    ref = SeamActor.start()
    try:
        assert SeamActor.loops_started == before + 1
        assert ref in ActorRegistry.get_all()
    finally:
        ActorRegistry.unregister(ref)


def test_tell_checks_is_alive_then_puts_a_reply_less_envelope() -> None:
    actor = SeamActor()
    actor.actor_ref.tell("hello")

    (envelope,) = inbox_of(actor).items
    assert envelope.message == "hello"
    assert envelope.reply_to is None

    actor.actor_stopped.set()
    with pytest.raises(ActorDeadError):
        actor.actor_ref.tell("late")
    assert len(inbox_of(actor).items) == 1


def test_ask_puts_an_envelope_replying_to_a_future_from_create_future() -> None:
    actor = SeamActor()
    future = actor.actor_ref.ask("question", block=False)

    (envelope,) = inbox_of(actor).items
    assert isinstance(future, pykka.Future)
    assert envelope.reply_to is future
    assert envelope.message == "question"


def test_ask_on_a_stopped_actor_fails_the_future_without_putting() -> None:
    actor = SeamActor()
    actor.actor_stopped.set()

    future = actor.actor_ref.ask("late", block=False)

    assert inbox_of(actor).items == []
    with pytest.raises(ActorDeadError):
        future.get(timeout=TIMEOUT)


def test_ask_lets_an_exception_from_put_escape() -> None:
    # Why DispatcherActor's inbox fails an ask's future instead of raising from put().
    actor = SeamActor()

    def refuse(_envelope: Envelope[Any], /) -> None:
        raise ActorDeadError("refused")

    inbox_of(actor).put = refuse  # type: ignore[method-assign]
    with pytest.raises(ActorDeadError, match="refused"):
        actor.actor_ref.ask("x", block=False)


def test_stop_asks_with_actor_stop_and_converts_through_a_get_hook() -> None:
    actor = SeamActor()
    stopping = actor.actor_ref.stop(block=False)

    (envelope,) = inbox_of(actor).items
    assert isinstance(envelope.message, messages._ActorStop)
    assert envelope.reply_to is not None
    envelope.reply_to.set(None)
    assert stopping.get(timeout=TIMEOUT) is True


def test_loop_setup_runs_on_start_and_handle_receive_dispatches() -> None:
    actor = SeamActor()
    actor._actor_loop_setup()

    assert actor.log == ["on_start"]
    assert actor._handle_receive("m") == ("received", "m")
    call = messages.ProxyCall(attr_path=("method",), args=(21,), kwargs={})
    assert actor._handle_receive(call) == 42


def test_stop_sets_the_flag_runs_on_stop_and_unregisters(monkeypatch: pytest.MonkeyPatch) -> None:
    unregistered: list[pykka.ActorRef[Any]] = []
    monkeypatch.setattr(ActorRegistry, "unregister", unregistered.append)
    actor = SeamActor()

    actor._handle_receive(messages._ActorStop())

    assert actor.actor_stopped.is_set()
    assert actor.log == ["on_stop"]
    assert unregistered == [actor.actor_ref]


def test_handle_failure_sets_the_flag_and_unregisters(monkeypatch: pytest.MonkeyPatch) -> None:
    unregistered: list[pykka.ActorRef[Any]] = []
    monkeypatch.setattr(ActorRegistry, "unregister", unregistered.append)
    actor = SeamActor()

    actor._handle_failure(None, None, None)

    assert actor.actor_stopped.is_set()
    assert unregistered == [actor.actor_ref]


def test_future_base_internals_used_by_dispatcher_future() -> None:
    # DispatcherFuture builds on pykka.Future's get-hook machinery (map/join/filter/reduce).
    future: pykka.Future[int] = pykka.Future()
    assert future._get_hook is None
    future.set_get_hook(lambda _timeout: 7)
    assert future.get(timeout=0) == 7


@pytest.mark.parametrize(
    ("function", "digest"),
    [
        # DispatcherActor._dispatch_one / _dispatch_teardown copy these two loops' semantics.
        (pykka.Actor._actor_loop_running, "4109f316d2be434e"),
        (pykka.Actor._actor_loop_teardown, "1b35ca263372af74"),
    ],
    ids=["_actor_loop_running", "_actor_loop_teardown"],
)
def test_the_copied_loops_are_unchanged(function: Any, digest: str) -> None:
    source = inspect.getsource(function)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == digest, (
        f"pykka changed {function.__qualname__}: port the change to actors/_dispatch.py"
    )
