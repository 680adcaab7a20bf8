"""What a projector tells the query router, and when (``actors._router_link``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from actors import _router_link as router_link
from actors._messages import ViewAdvanced
from actors._router_link import RouterLink


class Inbox:
    """A ``Teller`` that keeps what it was told (the link's whole view of the router)."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)


def test_progress_is_told_only_while_queries_wait() -> None:
    inbox = Inbox()
    waiting = [0]
    link = RouterLink(inbox, waiting=lambda: waiting[0])
    link.begin_step()
    link.tell({"orders": 5})
    assert inbox.told == []  # nobody waits: the router's thread is not woken
    waiting[0] = 1
    link.tell({"orders": 6})
    assert inbox.told == [ViewAdvanced({"orders": 6})]
    assert link.queries_waiting()


def test_without_a_count_every_progress_is_told_and_without_a_router_nothing_is() -> None:
    inbox = Inbox()
    always = RouterLink(inbox)
    always.begin_step()
    always.tell({"orders": 1})
    assert inbox.told == [ViewAdvanced({"orders": 1})]
    nowhere = RouterLink(None, waiting=lambda: 3)
    nowhere.begin_step()
    nowhere.tell({"orders": 2})  # no router: nothing to tell, nothing raised
    nowhere.end_step({"orders": 2})
    nowhere.adopted("orders", 2)


def test_telling_pauses_until_the_router_has_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    # A window far longer than the test: the pause can only end with the answer.
    monkeypatch.setattr(router_link, "HAND_OVER_SECONDS", 60.0)
    answered = threading.Event()
    asked: list[bool] = []

    def due(_view: str, _position: int) -> bool:
        asked.append(not answered.is_set())
        return asked[-1]

    link = RouterLink(Inbox(), due=due)
    link.begin_step()
    returned = threading.Event()

    def tell() -> None:
        link.tell({"orders": 7})
        returned.set()

    thread = threading.Thread(target=tell, daemon=True)
    thread.start()
    assert not returned.wait(0.05)  # still waiting for the answer
    answered.set()
    assert returned.wait(5.0)
    thread.join(5.0)
    assert asked[0] is True
    assert asked[-1] is False  # it stopped because the router answered


def test_the_pauses_of_one_step_are_bounded_and_a_new_step_starts_a_new_window() -> None:
    calls: list[int] = []

    def never_answered(_view: str, position: int) -> bool:
        calls.append(position)
        return True

    link = RouterLink(Inbox(), due=never_answered)
    link.begin_step()
    started = time.perf_counter()
    link.tell({"orders": 1})  # polls until the step's window closes, then gives up
    assert time.perf_counter() - started < 5.0
    assert len(calls) > 1
    calls.clear()
    link.tell({"orders": 2})  # the window is spent: asked once, no pause
    assert calls == [2]
    calls.clear()
    link.begin_step()
    link.tell({"orders": 3})
    assert len(calls) > 1  # a fresh window


def test_steps_are_reported_whole_only_when_asked_and_adoptions_always() -> None:
    inbox = Inbox()
    quiet = RouterLink(inbox, waiting=lambda: 0)
    quiet.end_step({"orders": 4})
    assert inbox.told == []
    quiet.adopted("orders", 9)  # a swapped-in copy is always told, queries or not
    assert inbox.told == [ViewAdvanced({"orders": 9})]
    inbox.told.clear()
    reporting = RouterLink(inbox, waiting=lambda: 0, report_steps=True)
    advanced = {"orders": 4, "stats": 3}
    reporting.end_step(advanced)
    reporting.end_step({})  # nothing advanced: nothing told
    assert inbox.told == [ViewAdvanced({"orders": 4, "stats": 3})]
    advanced["orders"] = 5
    assert inbox.told[0].positions == {"orders": 4, "stats": 3}  # told a copy
