"""Pure write model: the Decider protocol, the error hierarchy and the order aggregate."""

from domain.decider import Command, Decider

__all__ = ["Command", "Decider"]
