"""Telling an actor without an object for the cyclic collector: the command path's ``tell``.

``pykka.ActorRef.tell`` wraps each message in a ``pykka`` envelope, a slotted object the cyclic
collector tracks. The command path tells twice per command (the engine to the aggregate, the
aggregate to the writer), and with the futures and the messages themselves made untracked, the
envelopes were two of the five tracked objects left per command in flight: what sets how often
young collections run under a load, and how long the older ones take (tens of milliseconds with
20k commands in flight). :func:`tell` puts an untracked :class:`Mail` in the inbox instead;
pykka's actor loop and the dispatcher's read only its ``message`` and ``reply_to``.

An untracked object in a reference cycle keeps the cycle from ever being collected. A queued
:class:`Mail` is in one only while it waits (its message may reach back to the inbox through an
actor ref), and every inbox is drained at its actor's stop; it must not be used for messages an
actor keeps.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
import pykka

from actors._messages import Teller

__all__ = ["Mail", "tell"]


class Mail(msgspec.Struct, frozen=True, gc=False):
    """A message in an inbox, as pykka's envelope but untracked by the cyclic collector.

    Attributes:
        message: The message.
        reply_to: The future to answer (None: a tell).
    """

    message: Any
    reply_to: pykka.Future[Any] | None = None


def tell(target: Teller, message: Any) -> None:
    """Tell ``target`` ``message`` as ``ActorRef.tell`` does, without a tracked envelope.

    A target that is not a plain ``pykka.ActorRef`` (a test's fault-injecting wrapper, a
    forwarder to another process) is told through its own ``tell``.

    Raises:
        pykka.ActorDeadError: The actor is not running (as ``ActorRef.tell``).
    """
    if type(target) is not pykka.ActorRef:
        target.tell(message)
        return
    if not target.is_alive():
        raise pykka.ActorDeadError(f"{target} not found")
    target.actor_inbox.put(cast("Any", Mail(message)))
