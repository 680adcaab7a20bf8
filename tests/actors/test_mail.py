"""actors._mail: ``tell`` without a tracked envelope, on both actor types the engine runs."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from actors._dispatch import Dispatcher, DispatcherActor
from actors._mail import Mail, tell

TIMEOUT = 10.0


class Collector(pykka.Actor):
    """Keeps what it is told; answers an ask with everything so far."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "report":
            return list(self.seen)
        self.seen.append(message)
        return None


@pytest.fixture(params=["threading", "dispatcher"])
def actor_type(request: pytest.FixtureRequest) -> Iterator[type[Collector]]:
    """The collector on a thread of its own (as the writer) and on a dispatcher (aggregates)."""
    if request.param == "threading":
        yield type("ThreadedCollector", (Collector, pykka.ThreadingActor), {})
        return
    dispatcher = Dispatcher(workers=2, name="test-mail")
    base = type("DispatchedActor", (DispatcherActor,), {"dispatcher": dispatcher})
    yield type("DispatchedCollector", (Collector, base), {})
    assert dispatcher.shutdown(timeout=TIMEOUT)


def test_mail_arrives_in_order_mixed_with_pykka_tells(actor_type: type[Collector]) -> None:
    ref = actor_type.start()
    try:
        for number in range(200):
            if number % 3:
                tell(ref, number)
            else:
                ref.tell(number)
        assert ref.ask("report", timeout=TIMEOUT) == list(range(200))
    finally:
        ref.stop(timeout=TIMEOUT)


def test_telling_a_stopped_actor_raises_as_pykka_does(actor_type: type[Collector]) -> None:
    ref = actor_type.start()
    ref.stop(timeout=TIMEOUT)

    with pytest.raises(pykka.ActorDeadError, match="not found"):
        tell(ref, "late")
    with pytest.raises(pykka.ActorDeadError, match="not found"):
        ref.tell("late")


def test_a_target_that_is_not_an_actor_ref_is_told_through_its_own_tell() -> None:
    class Forwarder:
        def __init__(self) -> None:
            self.told: list[Any] = []

        def tell(self, message: Any) -> None:
            self.told.append(message)

    target = Forwarder()
    tell(target, "hello")
    assert target.told == ["hello"]


def test_mail_is_untracked_by_the_cyclic_collector() -> None:
    # The point of it: an envelope per tell was one more object for every young collection.
    mail = Mail(["a", "list"], reply_to=None)
    assert not gc.is_tracked(mail)
    assert mail.message == ["a", "list"]


def test_mail_queued_behind_a_busy_actor_is_handled_in_order(
    actor_type: type[Collector],
) -> None:
    # The writer drains its inbox in batches while it commits: queued mail keeps its order.
    release = threading.Event()

    class Blocking(actor_type):  # type: ignore[valid-type,misc]
        def on_receive(self, message: Any) -> Any:
            if message == "block":
                assert release.wait(TIMEOUT)
            return super().on_receive(message)

    ref = Blocking.start()
    tell(ref, "block")
    for number in range(5):
        tell(ref, number)
    report = ref.ask("report", block=False)
    release.set()
    assert report.get(timeout=TIMEOUT) == ["block", 0, 1, 2, 3, 4]
    ref.stop(timeout=TIMEOUT)
