"""The same behaviour on ThreadingActor and DispatcherActor, then what only the dispatcher does."""

from __future__ import annotations

import contextlib
import gc
import queue
import sys
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import pykka
import pytest
from pykka import ActorDeadError, ActorRegistry
from pykka._envelope import Envelope

from actors._dispatch import Dispatcher, DispatcherActor, DispatcherFuture, freeze_gc

A = TypeVar("A", bound=pykka.Actor)

TIMEOUT = 10.0


class Runtime:
    """Builds test actors on one actor type and stops whatever a test left running."""

    def __init__(self, base: type[pykka.Actor], dispatcher: Dispatcher | None) -> None:
        self.base = base
        self.dispatcher = dispatcher
        self._refs: list[pykka.ActorRef[Any]] = []

    def actor_class(self, behaviour: Callable[..., A]) -> type[A]:
        """Mix a behaviour (an abstract `pykka.Actor` subclass) into this runtime's actor type.

        Typed as a callable because mypy refuses abstract classes where `type[A]` is expected.
        """
        assert isinstance(behaviour, type)
        return cast("type[A]", type(behaviour.__name__, (behaviour, self.base), {}))

    def start(
        self, behaviour: Callable[..., A], *args: object, **kwargs: object
    ) -> pykka.ActorRef[A]:
        ref = self.actor_class(behaviour).start(*args, **kwargs)
        self._refs.append(ref)
        return ref

    def close(self) -> None:
        stops = [ref.stop(block=False) for ref in self._refs if ref.is_alive()]
        for stop in stops:
            with contextlib.suppress(pykka.ActorDeadError):
                stop.get(timeout=TIMEOUT)
        if self.dispatcher is not None:
            assert self.dispatcher.shutdown(timeout=TIMEOUT)


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    """A one-worker dispatcher owned by the test."""
    owned = Dispatcher(workers=1, name="test-dispatch")
    yield owned
    assert owned.shutdown(timeout=TIMEOUT)


@pytest.fixture(params=["threading", "dispatcher"])
def runtime(request: pytest.FixtureRequest) -> Iterator[Runtime]:
    if request.param == "threading":
        built = Runtime(pykka.ThreadingActor, None)
    else:
        # Two workers, so that serialization is really tested across threads.
        owned = Dispatcher(workers=2, name="test-runtime")
        base = type("TestDispatcherActor", (DispatcherActor,), {"dispatcher": owned})
        built = Runtime(base, owned)
    yield built
    built.close()


class Echo(pykka.Actor):
    def on_receive(self, message: Any) -> Any:
        return message


class Recorder(pykka.Actor):
    """Records its lifecycle into a shared list, handles proxied calls."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.value = 0
        self.actor_ref.tell("from-init")

    def on_start(self) -> None:
        self.events.append("start")

    def on_stop(self) -> None:
        self.events.append("stop")

    def on_failure(self, *_exc_info: object) -> None:
        self.events.append("failure")

    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise ValueError("boom")
        self.events.append(str(message))
        return message

    def add(self, amount: int) -> int:
        self.value += amount
        return self.value


class FailingStart(pykka.Actor):
    def on_start(self) -> None:
        raise RuntimeError("no start")


class Gated(pykka.Actor):
    """Blocks on a "block" message until `gate` is set; counts what it handled in `tally`."""

    def __init__(
        self, gate: threading.Event, entered: threading.Event, tally: list[int] | None = None
    ) -> None:
        super().__init__()
        self.gate = gate
        self.entered = entered
        self.tally = [] if tally is None else tally

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            self.entered.set()
            assert self.gate.wait(TIMEOUT)
        self.tally.append(1)
        return len(self.tally)


class Peek(pykka.Actor):
    """Answers with how many messages another actor has handled so far."""

    def __init__(self, tally: list[int]) -> None:
        super().__init__()
        self.tally = tally

    def on_receive(self, _message: Any) -> Any:
        return len(self.tally)


class Serial(pykka.Actor):
    """Detects overlapping execution and records the per-sender sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = 0
        self.overlaps = 0
        self.seen: dict[int, list[int]] = {}

    def on_receive(self, message: Any) -> Any:
        if message == "report":
            return self.overlaps, self.seen
        self.inside += 1
        if self.inside != 1:
            self.overlaps += 1
        sender, seq = message
        self.seen.setdefault(sender, []).append(seq)
        sum(range(50))  # a little work, so that a second runner would get a chance to overlap
        self.inside -= 1
        return None


class Counter(pykka.Actor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if message == "count":
            return self.count
        self.count += 1
        return self.count


class Marker:
    """A weak-referenceable message."""


def test_ask_returns_the_reply(runtime: Runtime) -> None:
    ref = runtime.start(Echo)

    assert ref.ask("hi", timeout=TIMEOUT) == "hi"
    assert ref.ask(42, block=False).get(timeout=TIMEOUT) == 42


def test_tells_are_handled_in_order_after_on_start_and_mail_sent_from_init(
    runtime: Runtime,
) -> None:
    events: list[str] = []
    ref = runtime.start(Recorder, events)

    for i in range(100):
        ref.tell(i)
    ref.ask("sync", timeout=TIMEOUT)

    assert events == ["start", "from-init", *(str(i) for i in range(100)), "sync"]


def test_proxy_calls_methods_and_reads_attributes(runtime: Runtime) -> None:
    ref = runtime.start(Recorder, [])
    proxy = ref.proxy()

    assert proxy.add(2).get(timeout=TIMEOUT) == 2
    assert proxy.add(3).get(timeout=TIMEOUT) == 5
    assert proxy.value.get(timeout=TIMEOUT) == 5


def test_stop_calls_on_stop_and_reports_whether_it_stopped_the_actor(runtime: Runtime) -> None:
    events: list[str] = []
    ref = runtime.start(Recorder, events)

    assert ref.stop(timeout=TIMEOUT) is True
    assert ref.stop(timeout=TIMEOUT) is False
    assert events[-1] == "stop"
    assert not ref.is_alive()


def test_exception_in_an_ask_goes_to_the_caller_and_the_actor_lives_on(runtime: Runtime) -> None:
    events: list[str] = []
    ref = runtime.start(Recorder, events)

    with pytest.raises(ValueError, match="boom"):
        ref.ask("fail", timeout=TIMEOUT)

    assert ref.ask("after", timeout=TIMEOUT) == "after"
    assert "failure" not in events


def test_exception_in_a_tell_calls_on_failure_and_stops_the_actor(runtime: Runtime) -> None:
    events: list[str] = []
    ref = runtime.start(Recorder, events)
    ref.ask("sync", timeout=TIMEOUT)

    ref.tell("fail")
    assert ref.actor_stopped.wait(TIMEOUT)

    with pytest.raises(ActorDeadError):
        ref.ask("after", timeout=TIMEOUT)
    assert events[-1] == "failure"
    assert "stop" not in events


def test_exception_in_on_start_stops_the_actor(runtime: Runtime) -> None:
    ref = runtime.start(FailingStart)

    assert ref.actor_stopped.wait(TIMEOUT)
    with pytest.raises(ActorDeadError):
        ref.ask("anything", timeout=TIMEOUT)


def test_stop_fails_the_asks_queued_behind_it(runtime: Runtime) -> None:
    gate, entered = threading.Event(), threading.Event()
    ref = runtime.start(Gated, gate, entered)
    blocked = ref.ask("block", block=False)
    assert entered.wait(TIMEOUT)

    stopping = ref.stop(block=False)
    behind = [ref.ask(i, block=False) for i in range(5)]
    gate.set()

    assert blocked.get(timeout=TIMEOUT) == 1
    assert stopping.get(timeout=TIMEOUT) is True
    for future in behind:
        with pytest.raises(ActorDeadError):
            future.get(timeout=TIMEOUT)


def test_mail_to_a_stopped_actor_fails_at_once(runtime: Runtime) -> None:
    ref = runtime.start(Echo)
    ref.stop(timeout=TIMEOUT)

    with pytest.raises(ActorDeadError):
        ref.tell("late")
    with pytest.raises(ActorDeadError):
        ref.ask("late", timeout=TIMEOUT)
    future = ref.ask("late", block=False)
    with pytest.raises(ActorDeadError):
        future.get(timeout=TIMEOUT)


def test_messages_from_many_threads_are_serialized_in_sender_order(runtime: Runtime) -> None:
    ref = runtime.start(Serial)
    senders, per_sender = 8, 500
    barrier = threading.Barrier(senders)
    errors: list[BaseException] = []

    def send(sender: int) -> None:
        try:
            barrier.wait(TIMEOUT)
            for seq in range(per_sender):
                ref.tell((sender, seq))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)

    overlaps, seen = ref.ask("report", timeout=TIMEOUT)
    assert errors == []
    assert overlaps == 0
    assert seen == {sender: list(range(per_sender)) for sender in range(senders)}


def test_a_handled_message_is_not_kept_alive(runtime: Runtime) -> None:
    ref = runtime.start(Echo)
    message = Marker()
    alive = weakref.ref(message)

    ref.ask(message, timeout=TIMEOUT)
    del message
    ref.ask("next", timeout=TIMEOUT)  # the worker has moved past the first message

    assert alive() is None


# Dispatcher-specific behaviour.


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Switch threads as often as possible, so that races get many chances to show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def on_one_worker(dispatcher: Dispatcher) -> Iterator[Runtime]:
    base = type("OneWorkerActor", (DispatcherActor,), {"dispatcher": dispatcher})
    built = Runtime(base, None)  # the dispatcher fixture shuts it down
    yield built
    built.close()


def test_a_flooded_actor_does_not_starve_another_on_one_worker(
    on_one_worker: Runtime, dispatcher: Dispatcher
) -> None:
    gate, entered, tally = threading.Event(), threading.Event(), list[int]()
    busy = on_one_worker.start(Gated, gate, entered, tally)
    peek = on_one_worker.start(Peek, tally)
    busy.tell("block")
    assert entered.wait(TIMEOUT)
    flood = 10_000
    for _ in range(flood):
        busy.tell("work")

    seen = peek.ask("how far?", block=False)
    gate.set()

    # The busy actor had one turn (`throughput` messages), then queued behind the other one.
    assert seen.get(timeout=TIMEOUT) == dispatcher.throughput
    assert busy.ask("work", timeout=TIMEOUT) == flood + 2


def test_dispatcher_actors_share_a_few_threads_and_stop_quickly(dispatcher: Dispatcher) -> None:
    class Tiny(DispatcherActor):
        def on_receive(self, message: Any) -> Any:
            return message

    threads_before = threading.active_count()
    refs = [Tiny.start_on(dispatcher) for _ in range(20_000)]
    replies = [ref.ask(i, block=False) for i, ref in enumerate(refs)]

    assert [reply.get(timeout=TIMEOUT) for reply in replies] == list(range(20_000))
    assert threading.active_count() <= threads_before  # thread actors of earlier tests may exit
    assert ActorRegistry.get_by_class(Tiny) == []

    stops = [ref.stop(block=False) for ref in refs]
    assert all(stop.get(timeout=TIMEOUT) for stop in stops)


def test_start_uses_the_class_dispatcher(dispatcher: Dispatcher) -> None:
    class Named(DispatcherActor):
        def on_receive(self, _message: Any) -> Any:
            return threading.current_thread().name

    Named.dispatcher = dispatcher
    ref = Named.start()

    assert ref.ask("where?", block=False).get(timeout=TIMEOUT).startswith("test-dispatch-")
    assert ref.stop(timeout=TIMEOUT)


def test_actors_get_distinct_uuid_urns_and_refs_that_tell_them_apart(
    dispatcher: Dispatcher,
) -> None:
    class Echo(DispatcherActor):
        def on_receive(self, message: Any) -> Any:
            return message

    refs = [Echo.start_on(dispatcher) for _ in range(50)]
    urns = [ref.actor_urn for ref in refs]
    assert len(set(urns)) == len(urns)
    assert all(uuid.UUID(urn.removeprefix("urn:uuid:")).urn == urn for urn in urns)
    assert refs[0] != refs[1]
    assert refs[3].ask("hi", block=False).get(timeout=TIMEOUT) == "hi"
    assert all(ref.stop(timeout=TIMEOUT) for ref in refs)


@pytest.mark.usefixtures("eager_switching")
def test_concurrent_senders_never_lose_a_wake_up(on_one_worker: Runtime) -> None:
    pairs, rounds = 3, 1000
    refs = [on_one_worker.start(Counter) for _ in range(pairs)]
    barrier = threading.Barrier(pairs)
    errors: list[BaseException] = []

    def ping_pong(ref: pykka.ActorRef[Counter]) -> None:
        try:
            barrier.wait(TIMEOUT)
            for _ in range(rounds):
                # Spinning (not sleeping) on the reply, the sender puts again while the worker
                # is still ending the turn: the window of the lost wake-up. A lost one strands
                # this ask for good, as this sender is the actor's only one.
                reply = ref.ask("+1", block=False)
                assert isinstance(reply, DispatcherFuture)
                deadline = time.monotonic() + TIMEOUT
                while not reply.done() and time.monotonic() < deadline:
                    pass
                reply.get(timeout=0)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=ping_pong, args=(ref,)) for ref in refs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)

    assert errors == []
    counts = [ref.ask("count", block=False) for ref in refs]
    assert [count.get(timeout=TIMEOUT) for count in counts] == [rounds] * pairs


class WatchedQueue(deque[Any]):
    """An inbox queue that puts a message from another thread the first time the worker finds
    it empty while holding the mailbox lock, i.e. in the middle of dropping the run token."""

    def __init__(self, lock: threading.Lock, ref: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self.lock = lock
        self.ref = ref
        self.sender_was_blocked: bool | None = None

    def __bool__(self) -> bool:
        empty = len(self) == 0
        if empty and self.sender_was_blocked is None and self.lock.locked():
            sender = threading.Thread(target=self.ref.tell, args=("late",))
            sender.start()
            sender.join(0.2)  # it must wait for the lock: the worker is checking emptiness
            self.sender_was_blocked = sender.is_alive()
        return not empty


class Watched(DispatcherActor):
    def __init__(self, handled: threading.Event) -> None:
        super().__init__()
        self.handled = handled
        self.watched = WatchedQueue(self.actor_inbox.lock, self.actor_ref)
        self.actor_inbox.queue = self.watched

    def on_receive(self, message: Any) -> Any:
        if message == "late":
            self.handled.set()
        return self.watched.sender_was_blocked


def test_a_put_racing_the_end_of_a_turn_waits_for_the_lock_and_is_delivered(
    dispatcher: Dispatcher,
) -> None:
    handled = threading.Event()
    ref = Watched.start_on(dispatcher, handled)

    # Nothing else is sent: were the wake-up lost, the message would stay in the inbox.
    assert handled.wait(TIMEOUT)
    assert ref.ask("blocked?", block=False).get(timeout=TIMEOUT) is True
    assert ref.stop(timeout=TIMEOUT)


def test_a_put_that_passed_is_alive_before_the_stop_fails_instead_of_hanging(
    on_one_worker: Runtime,
) -> None:
    ref = on_one_worker.start(Echo)
    assert ref.stop(timeout=TIMEOUT)
    # What ActorRef.ask/tell do when is_alive() was checked just before the actor stopped.
    late: DispatcherFuture[Any] = DispatcherFuture()

    ref.actor_inbox.put(Envelope("late", reply_to=late))
    with pytest.raises(ActorDeadError):
        late.get(timeout=TIMEOUT)
    with pytest.raises(ActorDeadError):
        ref.actor_inbox.put(Envelope("late"))


@pytest.mark.usefixtures("eager_switching")
def test_concurrent_stop_and_asks_never_hang(on_one_worker: Runtime) -> None:
    askers = 3
    barrier = threading.Barrier(askers + 1)
    errors: list[BaseException] = []
    for _ in range(150):
        ref = on_one_worker.start(Echo)
        outcomes: list[str] = []

        def ask(target: pykka.ActorRef[Any] = ref, seen: list[str] = outcomes) -> None:
            try:
                barrier.wait(TIMEOUT)
                for i in range(10):
                    try:
                        assert target.ask(i, block=False).get(timeout=TIMEOUT) == i
                        seen.append("answered")
                    except ActorDeadError:
                        seen.append("dead")
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=ask) for _ in range(askers)]
        for thread in threads:
            thread.start()
        barrier.wait(TIMEOUT)
        stopped = ref.stop(block=False)
        for thread in threads:
            thread.join(TIMEOUT * 2)
        assert stopped.get(timeout=TIMEOUT) is True
        assert errors == []
        assert len(outcomes) == askers * 10


def _echo_on(dispatcher: Dispatcher) -> pykka.ActorRef[Any]:
    actor_class = cast("type[DispatcherActor]", type("DispatchedEcho", (Echo, DispatcherActor), {}))
    return actor_class.start_on(dispatcher)


def test_mail_after_the_dispatcher_shut_down_fails_instead_of_hanging() -> None:
    owned = Dispatcher(name="short-lived")
    ref = _echo_on(owned)
    assert ref.ask("up", timeout=TIMEOUT) == "up"
    assert owned.shutdown(timeout=TIMEOUT)
    assert owned.shutdown(timeout=TIMEOUT)  # idempotent

    with pytest.raises(ActorDeadError):
        ref.ask("down", timeout=TIMEOUT)
    assert not ref.is_alive()


def test_dispatcher_rejects_nonsense_sizes() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        Dispatcher(workers=0)
    with pytest.raises(ValueError, match=">= 1"):
        Dispatcher(throughput=0)


# DispatcherFuture.


def test_done_callback_runs_once_in_the_setting_thread() -> None:
    future: DispatcherFuture[int] = DispatcherFuture()
    calls: list[tuple[int, str]] = []
    future.add_done_callback(
        lambda f: calls.append((f.get(timeout=0), threading.current_thread().name))
    )
    assert not future.done()

    setter = threading.Thread(target=future.set, args=(7,), name="setter")
    setter.start()
    setter.join(TIMEOUT)

    assert future.done()
    assert calls == [(7, "setter")]
    with pytest.raises(queue.Full):
        future.set(8)
    assert calls == [(7, "setter")]


def test_done_callback_on_a_resolved_future_runs_at_once() -> None:
    future: DispatcherFuture[int] = DispatcherFuture()
    future.set_exception((KeyError, KeyError("k"), None))
    seen: list[DispatcherFuture[int]] = []

    future.add_done_callback(seen.append)

    assert seen == [future]
    with pytest.raises(KeyError):
        future.get(timeout=0)


def test_a_failing_done_callback_does_not_stop_the_others() -> None:
    future: DispatcherFuture[str] = DispatcherFuture()
    seen: list[str] = []

    def broken(_: DispatcherFuture[str]) -> None:
        raise RuntimeError("bad callback")

    future.add_done_callback(broken)
    future.add_done_callback(lambda f: seen.append(f.get(timeout=0)))
    future.set("ok")

    assert seen == ["ok"]


def _recorder(seen: list[tuple[int, int]], number: int) -> Callable[[DispatcherFuture[int]], None]:
    return lambda future: seen.append((number, future.get(timeout=0)))


def test_done_callbacks_run_once_each_in_the_order_they_were_added() -> None:
    # One callback is kept as itself, more in a list: both shapes, and the step between them.
    for count in (1, 2, 3):
        future: DispatcherFuture[int] = DispatcherFuture()
        calls: list[tuple[int, int]] = []
        for number in range(count):
            future.add_done_callback(_recorder(calls, number))
        assert calls == []

        future.set(5)
        future.add_done_callback(_recorder(calls, -1))

        assert calls == [*[(n, 5) for n in range(count)], (-1, 5)]


def test_derived_futures_of_different_sources_keep_their_own_results() -> None:
    # Every future shares one "not computed yet" marker: a derived future's result must still
    # be its own, and computed once.
    first: DispatcherFuture[int] = DispatcherFuture()
    second: DispatcherFuture[int] = DispatcherFuture()
    computed: list[int] = []

    def double(value: int) -> int:
        computed.append(value)
        return value * 2

    first_doubled, second_doubled = first.map(double), second.map(double)
    first.set(1)
    second.set(10)

    assert (first_doubled.get(timeout=0), second_doubled.get(timeout=0)) == (2, 20)
    assert (first_doubled.get(timeout=0), second_doubled.get(timeout=0)) == (2, 20)
    assert computed == [1, 10]


def test_derived_futures_refuse_done_callbacks() -> None:
    future: DispatcherFuture[int] = DispatcherFuture()
    derived = future.map(lambda value: value + 1)
    assert isinstance(derived, DispatcherFuture)

    with pytest.raises(TypeError):
        derived.add_done_callback(lambda _: None)
    future.add_done_callback(lambda _: None)
    with pytest.raises(TypeError):
        future.set_get_hook(lambda _timeout: 0)
    future.set(1)
    assert derived.get(timeout=0) == 2


def test_asks_to_dispatcher_actors_return_dispatcher_futures(on_one_worker: Runtime) -> None:
    ref = on_one_worker.start(Echo)
    future = ref.ask("x", block=False)
    assert isinstance(future, DispatcherFuture)
    done = threading.Event()

    future.add_done_callback(lambda _: done.set())

    assert done.wait(TIMEOUT)
    assert future.get(timeout=0) == "x"


def test_freeze_gc_freezes_what_is_alive() -> None:
    try:
        assert freeze_gc() > 0
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
