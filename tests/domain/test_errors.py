import pickle
from typing import Any

import pytest

import domain.errors as errors_module
from domain.errors import (
    ActorFailed,
    AggregateNotFound,
    CommandRejected,
    CommandTimeout,
    CommitFailed,
    ConcurrencyConflict,
    ConsistencyTimeout,
    CorruptLog,
    EngineClosed,
    EngineError,
    IdempotencyConflict,
    InvalidCommand,
    InvalidQuery,
    InvalidSaga,
    InvalidView,
    LogLocked,
    MaintenanceFailed,
    ProjectionUnavailable,
    ShardCountMismatch,
    ShardUnavailable,
    StorageError,
    UnknownView,
)


def _examples() -> list[tuple[EngineError, dict[str, Any], list[str]]]:
    """Every error class once: the instance, its expected attributes, words its message needs."""
    return [
        (
            CommandRejected("order-1", "order_not_pending", "cannot ship order 'order-1'"),
            {"aggregate_id": "order-1", "rule": "order_not_pending"},
            ["order-1"],
        ),
        (
            InvalidCommand("order-2", "invalid_type", "price must be a Decimal, got float"),
            {"aggregate_id": "order-2", "rule": "invalid_type"},
            ["Decimal", "float"],
        ),
        (
            AggregateNotFound("order-3", "order"),
            {"aggregate_id": "order-3", "stream_type": "order"},
            ["order-3", "order", "does not exist"],
        ),
        (
            ConcurrencyConflict("order-4", expected=3, actual=5),
            {"aggregate_id": "order-4", "expected": 3, "actual": 5},
            ["order-4", "3", "5", "expected_version=5"],
        ),
        (
            IdempotencyConflict("cmd-42"),
            {"command_id": "cmd-42"},
            ["cmd-42", "fresh command_id"],
        ),
        (
            InvalidQuery("page_size", 0, "1..1000"),
            {"field": "page_size", "value": 0, "allowed": "1..1000"},
            ["page_size", "0", "1..1000"],
        ),
        (
            UnknownView("nope", ["orders", "stats"]),
            {"field": "view", "value": "nope", "known": ["orders", "stats"]},
            ["nope", "orders", "stats"],
        ),
        (
            UnknownView("Deposit", ["GetBalance", "GetOrderById"], field="query"),
            {"field": "query", "value": "Deposit", "known": ["GetBalance", "GetOrderById"]},
            ["Deposit", "GetBalance, GetOrderById"],
        ),
        (
            InvalidView("'balances'", "two views have this name; give each view its own"),
            {"view": "'balances'", "reason": "two views have this name; give each view its own"},
            ["balances", "give each view its own"],
        ),
        (
            InvalidSaga("'a.b'", "the saga name may not hold '.'"),
            {"saga": "'a.b'", "reason": "the saga name may not hold '.'"},
            ["saga", "a.b", "may not hold"],
        ),
        (
            ConsistencyTimeout("orders", wanted=10, reached=7, stale_result={"total": 1}),
            {"view": "orders", "wanted": 10, "reached": 7, "stale_result": {"total": 1}},
            ["orders", "10", "7", "stale_result", "longer timeout"],
        ),
        (
            LogLocked("/data/engine", pid=4242),
            {"path": "/data/engine", "pid": 4242},
            ["/data/engine", "4242"],
        ),
        (
            MaintenanceFailed("backup", "/backups/b1", "it exists; name a new directory"),
            {
                "operation": "backup",
                "path": "/backups/b1",
                "reason": "it exists; name a new directory",
            },
            ["backup", "/backups/b1", "not done", "new directory"],
        ),
        (
            CorruptLog(position=17, reason="unknown tag 'Foo'"),
            {"position": 17, "reason": "unknown tag 'Foo'"},
            ["17", "unknown tag 'Foo'", "upcaster"],
        ),
        (
            CommitFailed("disk full"),
            {"reason": "disk full"},
            ["disk full", "retry"],
        ),
        (
            StorageError("load", "OSError(5)"),
            {"operation": "load", "reason": "OSError(5)"},
            ["load", "OSError(5)", "retry"],
        ),
        (
            CommandTimeout("cmd-7", 2.5),
            {"command_id": "cmd-7", "seconds": 2.5},
            ["cmd-7", "2.5", "same command_id"],
        ),
        (
            ActorFailed("writer", "OSError(5)", outcome_unknown=True),
            {"actor": "writer", "reason": "OSError(5)", "outcome_unknown": True},
            ["writer", "OSError(5)", "same command_id"],
        ),
        (
            ActorFailed("router", "KeyError('x')"),
            {"actor": "router", "outcome_unknown": False},
            ["router", "nothing was done; retry"],
        ),
        (
            EngineClosed(),
            {},
            ["closed", "open a new Engine"],
        ),
        (
            ProjectionUnavailable("it exited with code -9"),
            {"reason": "it exited with code -9"},
            ["projection process", "code -9", "status().projection"],
        ),
        (
            ShardUnavailable(2, "its process died"),
            {"shard": 2, "reason": "its process died"},
            ["shard 2", "same command_id"],
        ),
        (
            ShardCountMismatch("/data", 4, 2),
            {"path": "/data", "recorded": 4, "requested": 2},
            ["4 shards, not 2", "shards=4"],
        ),
    ]


EXAMPLES = _examples()
IDS = [type(error).__name__ for error, _, _ in EXAMPLES]


def test_the_examples_cover_every_public_error_class() -> None:
    public = {getattr(errors_module, name) for name in errors_module.__all__}
    assert {type(error) for error, _, _ in EXAMPLES} == public - {EngineError}


@pytest.mark.parametrize(("error", "attributes", "words"), EXAMPLES, ids=IDS)
def test_every_error_derives_from_engine_error_and_exception(
    error: EngineError, attributes: dict[str, Any], words: list[str]
) -> None:
    del attributes, words
    assert isinstance(error, EngineError)
    assert isinstance(error, Exception)


@pytest.mark.parametrize(("error", "attributes", "words"), EXAMPLES, ids=IDS)
def test_every_error_carries_its_data_as_attributes(
    error: EngineError, attributes: dict[str, Any], words: list[str]
) -> None:
    del words
    for name, value in attributes.items():
        assert getattr(error, name) == value


@pytest.mark.parametrize(("error", "attributes", "words"), EXAMPLES, ids=IDS)
def test_every_error_message_mentions_the_values_and_what_to_do(
    error: EngineError, attributes: dict[str, Any], words: list[str]
) -> None:
    del attributes
    message = str(error)
    for word in words:
        assert word in message


@pytest.mark.parametrize(("error", "attributes", "words"), EXAMPLES, ids=IDS)
def test_every_error_survives_a_pickle_round_trip_with_its_attributes(
    error: EngineError, attributes: dict[str, Any], words: list[str]
) -> None:
    del words
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    for name, value in attributes.items():
        assert getattr(copy, name) == value


def test_invalid_command_is_a_command_rejected() -> None:
    assert issubclass(InvalidCommand, CommandRejected)
    with pytest.raises(CommandRejected) as caught:
        raise InvalidCommand("order-1", "too_long", "customer_id is too long")
    assert caught.value.rule == "too_long"


def test_unknown_view_is_an_invalid_query() -> None:
    assert issubclass(UnknownView, InvalidQuery)


def test_unknown_view_with_no_views_registered_says_so() -> None:
    error = UnknownView("orders", [])
    assert "no views registered" in str(error)
    assert error.known == []


def test_unknown_view_lists_the_known_views_sorted() -> None:
    assert "a, b, c" in str(UnknownView("x", ["c", "a", "b"]))


def test_concurrency_conflict_versions_are_ints() -> None:
    error = ConcurrencyConflict("order-1", expected=0, actual=2)
    assert isinstance(error.expected, int)
    assert isinstance(error.actual, int)
    assert "version 2" in str(error)
    assert "version 0" in str(error)


def test_consistency_timeout_keeps_the_stale_result_object_itself() -> None:
    stale = object()
    assert ConsistencyTimeout("stats", 5, 4, stale).stale_result is stale


def test_engine_closed_accepts_a_custom_message() -> None:
    error = EngineClosed("closed while executing CreateOrder")
    assert str(error) == "closed while executing CreateOrder"
    assert str(pickle.loads(pickle.dumps(error))) == str(error)  # noqa: S301 - our own bytes


def test_a_pickled_error_can_be_raised_and_caught_by_its_base_class() -> None:
    copy = pickle.loads(pickle.dumps(LogLocked("/d", 7)))  # noqa: S301 - our own bytes
    with pytest.raises(EngineError) as caught:
        raise copy
    assert isinstance(caught.value, LogLocked)
    assert caught.value.pid == 7


def test_a_pickled_error_keeps_extra_attributes_set_after_construction() -> None:
    error = CorruptLog(3, "bad bytes")
    error.add_note("while replaying view 'orders'")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert copy.position == 3
    assert copy.__notes__ == ["while replaying view 'orders'"]


def test_command_timeout_is_also_a_builtin_timeout_error() -> None:
    error = CommandTimeout("cmd-1", 1.0, what="accepted")
    assert isinstance(error, TimeoutError)
    assert "not accepted within 1.0 s" in str(error)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert isinstance(copy, CommandTimeout)
    assert isinstance(copy, TimeoutError)
    assert copy.command_id == "cmd-1"


def test_invalid_view_is_also_a_value_error_as_any_bad_argument() -> None:
    assert issubclass(InvalidView, ValueError)
    with pytest.raises(ValueError, match="disk"):
        raise InvalidView("'stats'", "its backend must be 'memory' or 'lmdb', not 'disk'")
