"""Read models: the generic view machinery and its two backends.

A :class:`View` is what the projector feeds and the query router asks. Read models are written
once over a small storage seam (:class:`Storage`) and run on either backend: :class:`MemoryView`
(rebuilt from the log at open) or :class:`LmdbView` (rows and checkpoint committed together).
:func:`bind_views` binds read models to backends (what ``Engine.open(views=...)`` does) and
:class:`QueryRoutes` sends each query to the view whose ``query_types`` name its type. The order
read models and their queries live in :mod:`views.orders`.
"""

from views._binding import bind_views, split_lmdb
from views._followed import FollowedView
from views._lmdb import LmdbView
from views._memory import MemoryView
from views._reader import ViewReader
from views._routes import QueryRoutes
from views._view import Backend, Index, ReadModel, RowFold, Storage, Table, View

__all__ = [
    "Backend",
    "FollowedView",
    "Index",
    "LmdbView",
    "MemoryView",
    "QueryRoutes",
    "ReadModel",
    "RowFold",
    "Storage",
    "Table",
    "View",
    "ViewReader",
    "bind_views",
    "split_lmdb",
]
