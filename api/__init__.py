"""The HTTP API (optional extra ``http``): a FastAPI app over an engine.

``create_app(engine)`` serves an engine you own (an ``actors.Engine``, or a
``cluster.ShardedEngine``: both are :class:`ServedEngine`); ``create_app_for_path(path)`` opens
and closes its own engine in the app's lifespan; ``uvicorn_config(app)`` serves either with
uvicorn so that even requests refused before the app get the JSON error shape. See the README
for the routes.
"""

from api._app import create_app, create_app_for_path
from api._body import MAX_BODY_BYTES
from api._common import ApiSettings
from api._errors import STATUS_BY_ERROR
from api._seam import ServedEngine, ShardedServed
from api._server import JsonErrorsH11Protocol, uvicorn_config

__all__ = [
    "MAX_BODY_BYTES",
    "STATUS_BY_ERROR",
    "ApiSettings",
    "JsonErrorsH11Protocol",
    "ServedEngine",
    "ShardedServed",
    "create_app",
    "create_app_for_path",
    "uvicorn_config",
]
