"""Queries from other threads while the writer applies never see a half-applied event."""

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from views_kit import OrderLog, Rig, encoded, open_rig, random_log, reference

from views import Backend
from views.orders import GetCustomerOrders, GetOrderStats, SearchOrders

TIMEOUT = 30.0
READERS = 2
MAX_QUERIES = 20_000  # per reader: bounds the test even if the writer is slow


@pytest.fixture(scope="module")
def log() -> OrderLog:
    return random_log(seed=3, commands=160, customers=2, products=5)


@pytest.fixture(autouse=True)
def _frequent_thread_switches() -> Iterator[None]:
    # The writer would otherwise finish inside one 5 ms GIL slice: switch often, to interleave.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(previous)


@pytest.fixture(params=["memory", "lmdb"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    backend: Backend = request.param
    with open_rig(backend, tmp_path / "data") as opened:
        yield opened


def _queries(log: OrderLog) -> list[object]:
    customer = next(iter(log.states.values())).customer_id
    return [
        GetOrderStats(),
        GetCustomerOrders(customer, page_size=1000),
        SearchOrders(query="sku-0", sort_by="total_amount", page_size=1000),
    ]


def _answers_by_prefix(log: OrderLog, query: object) -> dict[bytes, int]:
    """Each answer the reference gives at some prefix of the log -> the last such prefix."""
    answers: dict[bytes, int] = {}
    for position in range(len(log.records) + 1):
        answers[encoded(reference(log.upto(position), query))] = position
    return answers


def _grown(seen: list[int], finished: list[int]) -> Callable[[], bool]:
    mark = len(seen)
    return lambda: len(seen) > mark or bool(finished)


def test_concurrent_queries_only_see_whole_events(rig: Rig, log: OrderLog) -> None:
    queries = _queries(log)
    expected = [_answers_by_prefix(log, query) for query in queries]
    barrier = threading.Barrier(READERS + 1, timeout=TIMEOUT)
    done = threading.Event()
    answered = threading.Condition()
    errors: list[BaseException] = []
    seen: list[int] = []
    finished: list[int] = []

    def read(reader: int) -> None:
        try:
            barrier.wait()
            for count in range(MAX_QUERIES):
                index = (reader + count) % len(queries)
                view = rig.view_for(queries[index])
                before = view.position()
                answer = encoded(view.query(queries[index]))
                # A half-applied event matches no prefix; a stale answer matches an old one.
                assert answer in expected[index], f"torn answer to {queries[index]}"
                assert expected[index][answer] >= before, "answer older than the position"
                with answered:
                    seen.append(expected[index][answer])
                    answered.notify_all()
                if done.is_set():
                    return
        except BaseException as error:
            errors.append(error)
        finally:
            with answered:
                finished.append(reader)
                answered.notify_all()

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(READERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    try:
        # Small batches; after each, let a query finish so that readers see many states (the
        # next query still races with the next batch).
        for start in range(0, len(log.records), 3):
            rig.apply(log.records[start : start + 3])
            with answered:
                answered.wait_for(_grown(seen, finished), timeout=TIMEOUT)
    finally:
        done.set()
        for thread in threads:
            thread.join(TIMEOUT)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(set(seen)) > 10  # the readers saw many different states
    for query in queries:
        assert rig.ask(query) == reference(log, query)


def test_queries_during_adopt_see_the_old_or_the_new_view(rig: Rig, log: OrderLog) -> None:
    half = len(log.records) // 2
    rig.apply(log.records[:half])
    old, new = log.upto(half), log
    query = GetOrderStats()
    allowed = {encoded(reference(old, query)), encoded(reference(new, query))}
    view = rig.view_for(query)
    shadow = view.new_shadow()
    shadow.apply(log.records, len(log.records))
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    adopted = threading.Event()
    errors: list[BaseException] = []
    answers: list[bytes] = []

    def read() -> None:
        try:
            barrier.wait()
            for _ in range(MAX_QUERIES):
                answers.append(encoded(view.query(query)))
                if adopted.is_set() and answers[-1] != answers[0]:
                    return  # saw the swap
        except BaseException as error:
            errors.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    barrier.wait()
    view.adopt(shadow)
    adopted.set()
    reader.join(TIMEOUT)
    assert not reader.is_alive()
    assert errors == []
    assert set(answers) <= allowed
    assert view.query(query) == reference(new, query)
