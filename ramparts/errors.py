"""One error tree for the whole product.

Every error carries the stage where it happened and, where it has one, the position
(file and line, topic/partition/offset) of the record that caused it, so that a message
printed to an operator or written to a dead-letter record says where to look.
"""

from __future__ import annotations


class RampartsError(Exception):
    """Root of every error Ramparts raises on purpose."""

    stage = "ramparts"

    def __init__(self, message: str, *, position: str | None = None):
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        if self.position:
            return f"{self.message} (at {self.position})"
        return self.message


class ConfigError(RampartsError):
    """The configuration is invalid; the message says how to fix it."""

    stage = "config"


class ParseError(RampartsError):
    """A record could not be turned into a normalized event."""

    stage = "parse"


class DetectorError(RampartsError):
    stage = "detect"


class SinkError(RampartsError):
    stage = "sink"


class ActionError(RampartsError):
    stage = "action"
