from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from store import get_logger


@pytest.fixture(autouse=True)
def unconfigured() -> Iterator[None]:
    """structlog as a host that never configured it has it (capture_logs configures it)."""
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


def test_without_a_structlog_configuration_lines_go_to_stdlib_logging(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    log = get_logger("actors._example")
    with caplog.at_level(logging.DEBUG, logger="actors"):
        log.debug("commit", commands=3, head=7)
        log.warning("view_stalled", view="v", position=12)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("actors._example", logging.DEBUG, "commit commands=3 head=7"),
        ("actors._example", logging.WARNING, "view_stalled view='v' position=12"),
    ]
    assert (
        caplog.records[0].funcName
        == "test_without_a_structlog_configuration_lines_go_to_stdlib_logging"
    )
    assert capsys.readouterr().out == ""


def test_levels_below_the_stdlib_level_cost_nothing_and_print_nothing(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    log = get_logger("store._example")
    with caplog.at_level(logging.WARNING, logger="store"):
        log.debug("commit")
        log.info("store_opened")
    assert caplog.records == []
    assert capsys.readouterr() == ("", "")


def test_exception_attaches_the_exception_being_handled(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("views._example")
    with caplog.at_level(logging.ERROR, logger="views"):
        try:
            int("boom")
        except ValueError:
            log.exception("view_snapshot_failed", view="v")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is ValueError


def test_once_the_host_configures_structlog_lines_go_through_it() -> None:
    log = get_logger("actors._example")
    with capture_logs() as logs:
        log.debug("commit", commands=1)
        log.info("engine_opened", path="p")
    assert logs == [
        {"event": "commit", "commands": 1, "log_level": "debug"},
        {"event": "engine_opened", "path": "p", "log_level": "info"},
    ]
