"""Read models: the generic view machinery and its two backends.

A :class:`View` is what the projector feeds and the query router asks. Read models are written
once over a small storage seam (:class:`Storage`) and run on either backend: :class:`MemoryView`
(rebuilt from the log at open) or :class:`LmdbView` (rows and checkpoint committed together).
The order read models and their queries live in :mod:`views.orders`.
"""

from views._lmdb import LmdbView
from views._memory import MemoryView
from views._view import Backend, Index, ReadModel, Storage, Table, View

__all__ = [
    "Backend",
    "Index",
    "LmdbView",
    "MemoryView",
    "ReadModel",
    "Storage",
    "Table",
    "View",
]
