"""Shared helpers of the cluster tests: the Ray and engine fixtures, an order workload, a poll.

Ray starts once per test session (2-5 s) for the modules that use it, and is shut down at its end.
Test modules import the fixtures they use from here (a second ``conftest`` module would clash
with ``tests/store/conftest.py`` under mypy).
"""

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import ray

from cluster import ShardedEngine
from domain.orders import (
    AddOrderItem,
    Address,
    CancelOrder,
    CreateOrder,
    OrderItem,
    ShipOrder,
)

ADDRESS = Address(street="1 Main St", city="Berlin", postal_code="10115", country="DE")


def create(order_id: str, customer: str = "c-1", product: str = "p-1", price: str = "2.50") -> Any:
    return CreateOrder(
        customer_id=customer,
        items=[OrderItem(product_id=product, quantity=1, price=Decimal(price))],
        shipping_address=ADDRESS,
        order_id=order_id,
    )


def add(order_id: str, product: str = "p-2", quantity: int = 1, price: str = "1.00") -> Any:
    return AddOrderItem(
        order_id=order_id, product_id=product, quantity=quantity, price=Decimal(price)
    )


def workload(orders: int) -> list[Any]:
    """A deterministic mix: creates, adds (prices repeat, so totals tie), ships and cancels."""
    commands: list[Any] = []
    for i in range(orders):
        order_id = f"o-{i:03d}"
        commands.append(create(order_id, f"c-{i % 7}", f"p-{i % 5}", f"{1 + i % 4}.25"))
        commands.extend(add(order_id, f"x-{(i + j) % 6}", 1 + j, "3.00") for j in range(i % 3))
        if i % 5 == 1:
            commands.append(ShipOrder(order_id=order_id))
        elif i % 5 == 2:
            commands.append(CancelOrder(order_id=order_id, reason="changed my mind"))
    return commands


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    # Each module that imports this fixture gets its own copy of it: the first starts Ray, and
    # it alone stops it at the end of the session.
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


@pytest.fixture
def sharded(ray_local: None, tmp_path: Path) -> Iterator[ShardedEngine]:
    del ray_local
    engine = ShardedEngine.open(tmp_path / "sharded", shards=2)
    try:
        yield engine
    finally:
        engine.close()
