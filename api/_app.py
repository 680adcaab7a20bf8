"""The FastAPI app: order commands and queries over one :class:`Engine`, or over shards.

The event loop never waits on the engine: commands go through ``execute_async``, queries through
``query_async``, and the few direct reads (an order's version for its ETag, heads for
``?after=``) and ``status()`` run on the thread pool. The engine is any ``api.ServedEngine``:
an ``actors.Engine`` or a ``cluster.ShardedEngine`` (see ``api._seam`` for positions).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from actors import Engine
from api._commands import register_commands
from api._common import ApiSettings
from api._errors import install_error_handlers
from api._openapi import build_openapi
from api._queries import register_queries
from api._routing import IdRoute
from api._seam import ServedEngine, reads_for

__all__ = ["create_app", "create_app_for_path"]


def create_app(
    engine: ServedEngine | None = None,
    *,
    settings: ApiSettings | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """Build the HTTP API over ``engine``.

    The caller owns ``engine`` (opens and closes it); see :func:`create_app_for_path` for an app
    that opens and closes its own.

    Args:
        engine: The engine to serve, an ``actors.Engine`` or a ``cluster.ShardedEngine``; None
            until a ``lifespan`` sets ``app.state.engine``.
        settings: Timeouts and the body size cap.
        lifespan: An extra lifespan context (used by :func:`create_app_for_path`).

    Raises:
        TypeError: ``engine`` is neither kind of engine.
    """
    if engine is not None:
        reads_for(engine)  # refuses anything else now, not at the first request
    app = FastAPI(
        title="orderlog",
        version="0.1.0",
        description=(
            "Orders over an actor-based CQRS / event-sourcing engine. Money is exact: prices "
            "are decimal strings (numbers are read from their digits, never as floats). Every "
            "id (order, customer, product, Idempotency-Key) follows one grammar: 1-128 "
            "characters from A-Z a-z 0-9 . _ ~ -, a letter or digit first, not 'search'. "
            "422: the input breaks this schema; 409: it conflicts with the current state."
        ),
        lifespan=lifespan,
    )
    app.router.route_class = IdRoute
    app.state.engine = engine
    app.state.settings = settings or ApiSettings()
    install_error_handlers(app)
    register_commands(app)
    register_queries(app)
    app.openapi = build_openapi(app)  # type: ignore[method-assign]  # FastAPI's documented override
    return app


def create_app_for_path(
    path: str | os.PathLike[str], *, settings: ApiSettings | None = None, **engine_options: Any
) -> FastAPI:
    """Build an app that opens the engine at startup and closes it at shutdown (its lifespan).

    Suits ASGI servers that import an app factory. ``main.py serve`` opens the engine itself
    first instead, so a locked or unusable data directory is one clear line, not a traceback
    from the server's startup.

    Args:
        path: The data directory.
        settings: Timeouts and the body size cap.
        **engine_options: Passed to :meth:`Engine.open`.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await run_in_threadpool(partial(Engine.open, path, **engine_options))
        app.state.engine = engine
        try:
            yield
        finally:
            await run_in_threadpool(engine.close)

    return create_app(settings=settings, lifespan=lifespan)
