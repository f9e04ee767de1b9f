"""Errors that stop a target run with one line for the log."""

from __future__ import annotations


class TargetRunError(Exception):
    """Stops the run with one message for the log (no traceback from the CLI)."""


class UnknownStreamError(TargetRunError):
    """A stream that is neither opportunities, opportunity_roles nor mapped by stream_objects."""


class TooManyRejectionsError(TargetRunError):
    """More failed records than `max_rejections`; raised after everything was written."""


class InputLineError(TargetRunError):
    """Input the target cannot read; the message names the input line."""


class BatchFileError(Exception):
    """A BATCH message's file cannot be read (the reader adds the input line)."""
