"""A user's own aggregate and read model through the public Engine API, on both backends.

The bank domain (``bank_kit``) involves no order code: commands, queries with ``after=``,
rebuild, reopen, status, parked queries and parked (poison) events work for it exactly as for
the order views, and the order views still combine with it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Literal

import pytest
from bank_kit import (
    BALANCES,
    BANK,
    Balance,
    BalancesModel,
    Deposit,
    GetBalance,
    ListAccounts,
    OpenAccount,
    Withdraw,
)
from engine_kit import create
from waiting import wait_until

from actors import Engine
from domain.errors import CommandRejected, InvalidQuery, InvalidView, UnknownView
from domain.orders import ORDERS
from store import RecordedEvent
from views import MemoryView, Storage
from views.orders import GetOrderById, GetOrderStats, order_read_models

TIMEOUT: Final = 10.0
Backend = Literal["memory", "lmdb"]
BACKENDS: Final[tuple[Backend, ...]] = ("memory", "lmdb")


@contextmanager
def bank_engine(path: Path, backend: Backend, **options: Any) -> Iterator[Engine]:
    """Open an engine with only the bank aggregate and its balances view on ``backend``."""
    options.setdefault("durability", "async")
    engine = Engine.open(
        path, deciders=[BANK], views=[BALANCES], view_backends={"balances": backend}, **options
    )
    try:
        yield engine
    finally:
        engine.close()


def run_bank(engine: Engine, accounts: int = 3, rounds: int = 4) -> int:
    """Open ``accounts`` accounts (owners ann/bob alternating), move money; return the head."""
    position = 0
    for number in range(accounts):
        owner = "ann" if number % 2 == 0 else "bob"
        position = engine.execute(OpenAccount(account_id=f"acc-{number}", owner=owner)).position
    for round_ in range(rounds):
        for number in range(accounts):
            account = f"acc-{number}"
            position = engine.execute(Deposit(account_id=account, amount=100 + round_)).position
            if round_ % 2:
                position = engine.execute(Withdraw(account_id=account, amount=50)).position
    return position


def answers(engine: Engine, after: int) -> tuple[object, ...]:
    """Every account's balance and both owners' lists, once the view has applied ``after``."""
    balances = [
        engine.query(GetBalance(f"acc-{n}"), after=after, timeout=TIMEOUT) for n in range(3)
    ]
    owners = [
        engine.query(ListAccounts(owner), after=after, timeout=TIMEOUT) for owner in ("ann", "bob")
    ]
    return (*balances, *owners)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_users_aggregate_and_read_model_answer_commands_and_queries_with_after(
    tmp_path: Path, backend: Backend
) -> None:
    with bank_engine(tmp_path, backend) as engine:
        opened = engine.execute(OpenAccount(account_id="acc-1", owner="ann"))
        assert (opened.aggregate_id, opened.version) == ("acc-1", 1)
        deposited = engine.execute(Deposit(account_id="acc-1", amount=500))
        taken = engine.execute(Withdraw(account_id="acc-1", amount=120))
        with pytest.raises(CommandRejected, match="is below 10000"):
            engine.execute(Withdraw(account_id="acc-1", amount=10_000))
        # read-your-writes: the answer already holds the last command's effect
        assert engine.query(GetBalance("acc-1"), after=taken.position) == Balance(
            "acc-1", "ann", 380
        )
        assert engine.query(GetBalance("nobody"), after=deposited.position) is None
        assert engine.query(ListAccounts("ann"), after=taken.position) == [
            Balance("acc-1", "ann", 380)
        ]
        result = asyncio.run(engine.query_async(GetBalance("acc-1"), after=taken.position))
        assert result == Balance("acc-1", "ann", 380)
        status = engine.status()
        assert list(status.views) == ["balances"]
        assert status.views["balances"].position == status.head == taken.position
        assert status.views["balances"].lag_events == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_rebuild_of_a_users_view_equals_the_live_one_and_it_goes_on_applying(
    tmp_path: Path, backend: Backend
) -> None:
    with bank_engine(tmp_path, backend) as engine:
        head = run_bank(engine)
        live = answers(engine, head)
        report = engine.rebuild("balances")
        assert report.views == ("balances",)
        assert report.events == head
        assert answers(engine, head) == live
        assert engine.rebuild().views == ("balances",)
        later = engine.execute(Deposit(account_id="acc-0", amount=1)).position
        balance = engine.query(GetBalance("acc-0"), after=later, timeout=TIMEOUT)
        assert isinstance(balance, Balance)
        assert balance.balance == live[0].balance + 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_users_view_answers_the_same_after_reopen_without_replaying_the_log(
    tmp_path: Path, backend: Backend
) -> None:
    with bank_engine(tmp_path, backend) as engine:
        head = run_bank(engine)
        before = answers(engine, head)
    with bank_engine(tmp_path, backend) as engine:
        # LMDB keeps its checkpoint; memory loads the snapshot taken at close: both are at the
        # head as soon as the engine is open, before any replay could have run.
        assert engine.status().views["balances"].position == head
        assert answers(engine, head) == before
        later = engine.execute(Deposit(account_id="acc-2", amount=7)).position
        balance = engine.query(GetBalance("acc-2"), after=later, timeout=TIMEOUT)
        assert balance.balance == before[2].balance + 7  # type: ignore[attr-defined]


def test_a_query_type_no_view_answers_raises_invalid_query_naming_the_allowed_types(
    tmp_path: Path,
) -> None:
    with bank_engine(tmp_path, "memory") as engine:
        head = engine.execute(OpenAccount(account_id="acc-1", owner="ann")).position
        for after in (None, head, head + 1000):
            with pytest.raises(InvalidQuery) as caught:
                engine.query(GetOrderById("o-1"), after=after, timeout=TIMEOUT)
            assert caught.value.field == "query"
            assert caught.value.value == "GetOrderById"
            assert "GetBalance, ListAccounts" in str(caught.value)
        with pytest.raises(InvalidQuery, match="GetBalance, ListAccounts"):
            asyncio.run(engine.query_async(GetOrderStats(), after=head + 1000, timeout=TIMEOUT))
        # the engine goes on serving, and closes cleanly afterwards
        assert engine.query(GetBalance("acc-1"), after=head) == Balance("acc-1", "ann", 0)
    assert engine.closed


def test_a_read_model_refuses_bad_arguments_at_once_even_with_after(tmp_path: Path) -> None:
    with bank_engine(tmp_path, "lmdb") as engine:
        head = engine.execute(OpenAccount(account_id="acc-1", owner="ann")).position
        limits: tuple[Any, ...] = (0, 101, True, "3")
        for limit in limits:
            # far beyond the head: a parked query would time out; a refused one raises at once
            with pytest.raises(InvalidQuery) as caught:
                engine.query(ListAccounts("ann", limit=limit), after=head + 1000, timeout=30)
            assert caught.value.field == "limit"
        with pytest.raises(InvalidQuery, match="limit"):
            asyncio.run(engine.query_async(ListAccounts("ann", limit=0), after=head + 1000))
        assert engine.status().queries_waiting == 0


class GatedBalances(BalancesModel):
    """The balances read model whose apply waits while ``gate`` is clear (bounded wait).

    ``isolated``: the engine gives it a projector of its own.
    """

    isolated = True

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Wait for the gate (60 s at most: a failing test cannot hang the engine), then apply."""
        if not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(60)
        super().apply(storage, record)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_query_waiting_for_a_users_view_is_parked_until_the_view_gets_there(
    tmp_path: Path, backend: Backend
) -> None:
    model = GatedBalances()
    with (
        Engine.open(
            tmp_path,
            durability="async",
            deciders=[BANK],
            views=[model],
            view_backends={"balances": backend},
        ) as engine,
        ThreadPoolExecutor(1) as pool,
    ):
        opened = engine.execute(OpenAccount(account_id="acc-1", owner="ann"))
        assert engine.wait_for_views(opened.position, timeout=TIMEOUT)
        model.gate.clear()
        deposited = engine.execute(Deposit(account_id="acc-1", amount=5))
        assert model.waiting.wait(TIMEOUT)
        answer = pool.submit(
            engine.query, GetBalance("acc-1"), after=deposited.position, timeout=TIMEOUT
        )
        wait_until(lambda: engine.status().queries_waiting == 1)
        assert engine.status().views["balances"].lag_events == 1
        model.gate.set()
        assert answer.result(timeout=TIMEOUT) == Balance("acc-1", "ann", 5)
        assert engine.status().queries_waiting == 0


class PoisonBalances(BalancesModel):
    """The balances read model that raises for deposits of exactly 13 (a poison event)."""

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Raise for the poison deposit, else apply."""
        if getattr(record.event, "amount", None) == 13:
            raise RuntimeError(f"unlucky deposit at {record.position}")
        super().apply(storage, record)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_poison_event_of_a_users_view_is_parked_and_the_view_moves_on(
    tmp_path: Path, backend: Backend
) -> None:
    with Engine.open(
        tmp_path,
        durability="async",
        deciders=[BANK],
        views=[PoisonBalances()],
        view_backends={"balances": backend},
    ) as engine:
        engine.execute(OpenAccount(account_id="acc-1", owner="ann"))
        bad = engine.execute(Deposit(account_id="acc-1", amount=13))
        last = engine.execute(Deposit(account_id="acc-1", amount=2))
        assert engine.query(GetBalance("acc-1"), after=last.position).balance == 2
        status = engine.status()
        assert status.parked_events == 1
        assert status.views["balances"].parked == 1
        (parked,) = engine.parked("balances")
        assert parked.position == bad.position


def test_the_order_views_combine_with_a_users_own(tmp_path: Path) -> None:
    with Engine.open(
        tmp_path,
        durability="async",
        deciders=[ORDERS, BANK],
        views=[*order_read_models(), BalancesModel()],
        view_backends={"order_stats": "lmdb", "balances": "lmdb"},
    ) as engine:
        order = engine.execute(create("o-1"))
        account = engine.execute(OpenAccount(account_id="acc-1", owner="ann"))
        assert engine.query(GetOrderById("o-1"), after=order.position) is not None
        assert engine.query(GetOrderStats(), after=order.position).total_orders == 1
        assert engine.query(GetBalance("acc-1"), after=account.position) == Balance(
            "acc-1", "ann", 0
        )
        assert set(engine.status().views) == {
            "order_details",
            "customer_orders",
            "order_search",
            "order_stats",
            "balances",
        }
        assert engine.rebuild().views[-1] == "balances"
        assert engine.query(GetBalance("acc-1"), after=account.position) is not None


def test_views_the_engine_cannot_keep_are_refused_at_open_and_the_directory_stays_usable(
    tmp_path: Path,
) -> None:
    class Twin(BalancesModel):
        name = "twin"  # another name, the same query types

    refused: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"views": [object()]}, InvalidView, "neither a read model nor a bound view"),
        ({"views": [BALANCES, BalancesModel()]}, InvalidView, "two views have this name"),
        ({"views": [BALANCES, Twin()]}, InvalidView, "GetBalance"),
        ({"views": [BALANCES], "view_backends": {"nope": "memory"}}, UnknownView, "balances"),
        ({"views": [BALANCES], "view_backends": {"balances": "disk"}}, InvalidView, "disk"),
        (
            {"views": [MemoryView(BALANCES)], "view_backends": {"balances": "lmdb"}},
            InvalidView,
            "pass its read model instead",
        ),
    ]
    for options, error, words in refused:
        with pytest.raises(error, match=words):
            Engine.open(tmp_path, durability="async", deciders=[BANK], **options)
    # nothing was left open: the lock is free and a good list opens
    with bank_engine(tmp_path, "lmdb") as engine:
        head = engine.execute(OpenAccount(account_id="acc-1", owner="ann")).position
        assert engine.query(GetBalance("acc-1"), after=head) is not None


def test_a_view_passed_already_bound_still_works_next_to_read_models(tmp_path: Path) -> None:
    with Engine.open(
        tmp_path,
        durability="async",
        deciders=[ORDERS, BANK],
        views=[MemoryView(BalancesModel()), *order_read_models()],
    ) as engine:
        head = engine.execute(OpenAccount(account_id="acc-1", owner="bob")).position
        assert engine.query(ListAccounts("bob"), after=head) == [Balance("acc-1", "bob", 0)]
        assert engine.query(GetOrderById("o-1"), after=head) is None
