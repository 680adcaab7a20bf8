"""A program that embeds the engine, run as a real subprocess: the library is quiet by default."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120.0

# A realistic embedding: open, a few hundred commands (in flight and one at a time, some
# refused), every query with read-your-writes, status, a rebuild, close.
PROGRAM = """
import sys
from decimal import Decimal

from actors import CommandRejected, Engine
from domain.orders import (
    AddOrderItem, Address, CancelOrder, CreateOrder, OrderItem, ShipOrder,
)
from views.orders import GetCustomerOrders, GetOrderById, GetOrderStats, SearchOrders

SETUP

ADDRESS = Address(street="1 Main St", city="Lyon", postal_code="69001", country="FR")
with Engine.open(sys.argv[1]) as engine:
    futures = [
        engine.submit(
            CreateOrder(
                order_id=f"o-{i}",
                customer_id=f"c-{i % 7}",
                items=[OrderItem(product_id="kettle", quantity=1, price=Decimal("39.90"))],
                shipping_address=ADDRESS,
            )
        )
        for i in range(200)
    ]
    for future in futures:
        future.get(timeout=30)
    for i in range(100):
        engine.execute(
            AddOrderItem(order_id=f"o-{i}", product_id="mug", quantity=2, price=Decimal("9.50"))
        )
    for i in range(0, 100, 2):
        engine.execute(ShipOrder(order_id=f"o-{i}"))
    last = engine.execute(CancelOrder(order_id="o-1", reason="changed my mind"))
    try:
        engine.execute(ShipOrder(order_id="o-1"))
    except CommandRejected:
        pass
    assert engine.query(GetOrderById("o-0"), after=last.position).status == "shipped"
    assert engine.query(GetCustomerOrders("c-1"), after=last.position).total > 0
    assert engine.query(SearchOrders(query="o-1"), after=last.position).total > 0
    assert engine.query(GetOrderStats(), after=last.position).total_orders == 200
    engine.status()
    engine.rebuild()
"""

SETUPS = {
    "nothing configured": "",
    "stdlib logging configured": (
        "import logging\nlogging.basicConfig(level=logging.DEBUG, stream=sys.stderr)"
    ),
    "structlog configured": (
        "import structlog\n"
        "structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))"
    ),
}


def _embed(setup: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter running our own code
        [sys.executable, "-c", PROGRAM.replace("SETUP", setup), str(data)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_an_embedding_program_that_configures_no_logging_prints_nothing(tmp_path: Path) -> None:
    result = _embed(SETUPS["nothing configured"], tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    # A clean run logs nothing at WARNING or above either (those would reach stderr).
    assert result.stderr == ""


@pytest.mark.parametrize("setup", ["stdlib logging configured", "structlog configured"])
def test_a_host_that_configures_logging_gets_the_engine_lines_and_stdout_stays_its_own(
    tmp_path: Path, setup: str
) -> None:
    result = _embed(SETUPS[setup], tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    for event in ("engine_opened", "commit", "rebuilt", "engine_closed"):
        assert event in result.stderr, (event, result.stderr[-2000:])
