"""The HTTP API (optional extra ``http``): a FastAPI app over one :class:`actors.Engine`.

``create_app(engine)`` serves an engine you own; ``create_app_for_path(path)`` opens and closes
its own engine in the app's lifespan. See the README for the routes.
"""

from api._app import create_app, create_app_for_path
from api._body import MAX_BODY_BYTES
from api._common import ApiSettings
from api._errors import STATUS_BY_ERROR

__all__ = ["MAX_BODY_BYTES", "STATUS_BY_ERROR", "ApiSettings", "create_app", "create_app_for_path"]
