"""The engine's loggers: quiet unless the host program asks for logs.

structlog's built-in configuration prints every line, of every level, to stdout: a library that
called ``structlog.get_logger()`` and logged a line per group commit filled the stdout of any
program that embedded it. A library must not configure structlog (that is the host's choice), so
each engine module logs through :func:`get_logger`, which picks the route at each call:

- once the host has configured structlog (``structlog.configure``, as ``main.py`` does), lines go
  through the host's structlog pipeline, unchanged;
- until then they go to the standard library logger of the module's name (``actors._writer``,
  ``store._env``...), as ``event key=value ...``: silent below WARNING by Python's defaults,
  WARNING and up on stderr through logging's last-resort handler, and anything the host sets up
  with ``logging.basicConfig`` or handlers applies. Never stdout.

The check is made per call, not at import, so a host may configure logging after importing the
engine. A disabled level costs one ``isEnabledFor`` call (per-commit lines are DEBUG).
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["EngineLogger", "get_logger"]


class EngineLogger:
    """A structlog-shaped logger (``log.info("event", key=value)``) that stays quiet by default.

    Args:
        name: The logger's name (a module's ``__name__``).
    """

    __slots__ = ("_stdlib", "_structlog")

    def __init__(self, name: str) -> None:
        self._stdlib = logging.getLogger(name)
        # A lazy proxy: it reads structlog's configuration when used, so capture_logs() and a
        # host's later configure() both apply.
        self._structlog = structlog.get_logger(name)

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at DEBUG."""
        self._log(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at INFO."""
        self._log(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at WARNING."""
        self._log(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at ERROR."""
        self._log(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log ``event`` at ERROR with the exception being handled."""
        self._log(logging.ERROR, "exception", event, fields)

    def _log(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(self._structlog, method)(event, **fields)
            return
        if not self._stdlib.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", method == "exception")
        text = " ".join([event, *(f"{key}={value!r}" for key, value in fields.items())])
        # stacklevel 3: the record names the engine's call site, not this module.
        self._stdlib.log(level, text, exc_info=exc_info, stacklevel=3)


def get_logger(name: str) -> EngineLogger:
    """Return the logger of the engine module ``name`` (see the module docstring)."""
    return EngineLogger(name)
