"""A bank-account aggregate and a balances read model: a user's own domain, no order code.

Written only against the public seams (``domain.decider.Decider``, ``views.ReadModel``), as a
user would, in an importable module (never ``__main__``), to prove the engine generic end to end.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Final

import msgspec

from domain.errors import AggregateNotFound, CommandRejected, InvalidQuery
from store import RecordedEvent
from views import Storage

__all__ = [
    "BALANCES",
    "BANK",
    "AccountOpened",
    "AccountState",
    "Balance",
    "BalancesModel",
    "BankDecider",
    "Deposit",
    "Deposited",
    "GetBalance",
    "ListAccounts",
    "OpenAccount",
    "Withdraw",
    "Withdrawn",
]


def _new_id() -> str:
    return str(uuid.uuid4())


# ---------------------------------------------------------------- commands


class OpenAccount(msgspec.Struct, kw_only=True):
    """Open the account ``account_id`` for ``owner``."""

    account_id: str
    owner: str
    command_id: str = msgspec.field(default_factory=_new_id)
    expected_version: int | None = None


class Deposit(msgspec.Struct, kw_only=True):
    """Put ``amount`` cents (>= 1) into an open account."""

    account_id: str
    amount: int
    command_id: str = msgspec.field(default_factory=_new_id)
    expected_version: int | None = None


class Withdraw(msgspec.Struct, kw_only=True):
    """Take ``amount`` cents (>= 1) out of an open account; never below zero."""

    account_id: str
    amount: int
    command_id: str = msgspec.field(default_factory=_new_id)
    expected_version: int | None = None


BankCommand = OpenAccount | Deposit | Withdraw

# ---------------------------------------------------------------- events


class AccountOpened(msgspec.Struct, frozen=True, kw_only=True, tag="bank.AccountOpened"):
    """An account was opened."""

    account_id: str
    owner: str


class Deposited(msgspec.Struct, frozen=True, kw_only=True, tag="bank.Deposited"):
    """Money went into an account."""

    account_id: str
    amount: int


class Withdrawn(msgspec.Struct, frozen=True, kw_only=True, tag="bank.Withdrawn"):
    """Money went out of an account."""

    account_id: str
    amount: int


BankEvent = AccountOpened | Deposited | Withdrawn


class AccountState(msgspec.Struct, frozen=True, kw_only=True):
    """An account: ``opened`` once it exists, and its balance in cents."""

    opened: bool = False
    balance: int = 0


# ---------------------------------------------------------------- the decider


def _check_amount(command: Deposit | Withdraw) -> None:
    amount = command.amount
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise CommandRejected(command.account_id, "amount_below_one", "amount must be >= 1 cent")


class BankDecider:
    """The bank-account aggregate type (implements ``domain.decider.Decider``)."""

    stream_type: str = "account"
    command_types: tuple[type, ...] = (OpenAccount, Deposit, Withdraw)
    event_types: tuple[type[msgspec.Struct], ...] = (AccountOpened, Deposited, Withdrawn)
    state_type: type[AccountState] = AccountState
    state_schema_version: int = 1

    def initial(self) -> AccountState:
        """Return an account that is not open yet."""
        return AccountState()

    def aggregate_id(self, command: BankCommand) -> str:
        """Return the account's id."""
        return command.account_id

    def decide(
        self, state: AccountState, command: BankCommand, now: datetime
    ) -> Sequence[msgspec.Struct]:
        """Check ``command`` against the account; return its events."""
        del now  # balances keep no time
        if isinstance(command, OpenAccount):
            if state.opened:
                raise CommandRejected(command.account_id, "account_exists", "already open")
            return (AccountOpened(account_id=command.account_id, owner=command.owner),)
        if not state.opened:
            raise AggregateNotFound(command.account_id, "account")
        _check_amount(command)
        if isinstance(command, Deposit):
            return (Deposited(account_id=command.account_id, amount=command.amount),)
        if command.amount > state.balance:
            raise CommandRejected(
                command.account_id,
                "insufficient_funds",
                f"balance {state.balance} is below {command.amount}",
            )
        return (Withdrawn(account_id=command.account_id, amount=command.amount),)

    def evolve(self, state: AccountState, event: msgspec.Struct) -> AccountState:
        """Return the account after ``event``."""
        if isinstance(event, AccountOpened):
            return AccountState(opened=True)
        if isinstance(event, Deposited):
            return AccountState(opened=True, balance=state.balance + event.amount)
        if isinstance(event, Withdrawn):
            return AccountState(opened=True, balance=state.balance - event.amount)
        return state


BANK: Final = BankDecider()

# ---------------------------------------------------------------- the read model


class GetBalance(msgspec.Struct, frozen=True):
    """The balance of one account (None if unknown)."""

    account_id: str


class ListAccounts(msgspec.Struct, frozen=True):
    """The accounts of one owner, oldest first, at most ``limit`` (1..100)."""

    owner: str
    limit: int = 10


class Balance(msgspec.Struct, frozen=True):
    """One account's row: its owner and balance in cents."""

    account_id: str
    owner: str
    balance: int


class BalancesModel:
    """``balances``: one row per account, plus an index of accounts by owner."""

    name: str = "balances"
    tags: frozenset[str] | None = frozenset(
        {"bank.AccountOpened", "bank.Deposited", "bank.Withdrawn"}
    )
    query_types: tuple[type, ...] = (GetBalance, ListAccounts)

    def validate(self, query: object) -> None:
        """Refuse a malformed query before any row is read (or any wait for ``after=``)."""
        if not isinstance(query, ListAccounts):
            return
        limit = query.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise InvalidQuery("limit", query.limit, "an int from 1 to 100")

    def apply(self, storage: Storage, record: RecordedEvent) -> None:
        """Fold one bank event into its account's row (read and compute first, then write)."""
        rows = storage.table("account", Balance)
        event = record.event
        if isinstance(event, AccountOpened):
            rows.put(event.account_id, Balance(event.account_id, event.owner, 0))
            storage.index("owner").add(event.owner, record.position, event.account_id)
            return
        if not isinstance(event, Deposited | Withdrawn):
            return
        row = rows.get(event.account_id)
        if row is None:
            raise LookupError(f"account {event.account_id!r} has no row")
        change = event.amount if isinstance(event, Deposited) else -event.amount
        rows.put(event.account_id, msgspec.structs.replace(row, balance=row.balance + change))

    def query(self, storage: Storage, query: object) -> object:
        """Answer a :class:`GetBalance` or a :class:`ListAccounts`."""
        rows = storage.table("account", Balance)
        if isinstance(query, GetBalance):
            return rows.get(query.account_id)
        if isinstance(query, ListAccounts):
            found = []
            for account_id in storage.index("owner").scan(query.owner):
                row = rows.get(account_id)
                if row is not None:
                    found.append(row)
                if len(found) == query.limit:
                    break
            return found
        raise TypeError(f"unexpected query {type(query).__name__}")


BALANCES: Final = BalancesModel()
