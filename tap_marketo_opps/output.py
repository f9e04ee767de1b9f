"""The tap's Singer message writer: msgspec's speed, the SDK writer's exact bytes.

singer-sdk's default writer (simplejson) costs about a fifth of the tap's CPU, and it flushes
stdout after every message, one system call per record. msgspec encodes records several times
faster, but not always to the same bytes: it writes non-ASCII text as UTF-8 where simplejson
writes `\\u` escapes (a consumer whose stdin is not UTF-8 would read other text), writes DEL
unescaped, floats as `1e16` rather than `1e+16`, datetimes with `Z`, and refuses a lone
surrogate (which Marketo's JSON may carry) with an error that would stop the run.

So msgspec encodes only RECORD messages whose keys are all str and values all str, int, bool,
None or Decimal (what the tap's coercion emits), and only keeps its line when that line is
plain ASCII without DEL; every other message, and every record a stream map made into
something else, goes through the SDK's own encoder. The output is byte for byte what the
SDK's writer writes.

RECORD messages are gathered and written 64 KB at a time: every other message writes them
out first, and so does `flush()`, which the driver calls after each key batch. Nothing is
reordered, so a reader still sees every RECORD before the STATE that follows it.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import weakref
from decimal import Decimal
from typing import Any

import msgspec
from singer_sdk.singerlib import RecordMessage
from singer_sdk.singerlib.encoding.base import GenericSingerWriter
from singer_sdk.singerlib.encoding.simple import Message
from singer_sdk.singerlib.json import serialize_json

_encoder = msgspec.json.Encoder(decimal_format="number")
# Types msgspec writes exactly as simplejson does (a Decimal only when finite, else it raises).
_PLAIN = frozenset({str, int, bool, type(None), Decimal})
# Record keys: msgspec writes some other key types unlike simplejson (1e16, NaN, bytes, enums, dates).
_KEYS = frozenset({str})
_DEL = b"\x7f"


def encode_message(message: Message) -> bytes:
    """One message as one line of JSON, exactly as singer-sdk's SingerWriter writes it."""
    data = message.to_dict()
    if isinstance(message, RecordMessage):
        if message.time_extracted is not None:
            data["time_extracted"] = message.time_extracted.isoformat(sep="T")
        record = message.record
        if (
            isinstance(record, dict)
            and set(map(type, record.values())) <= _PLAIN
            and set(map(type, record)) <= _KEYS
        ):
            line = _fast(data)
            if line is not None:
                return line
    return serialize_json(data).encode() + b"\n"


def _fast(data: dict[str, Any]) -> bytes | None:
    try:
        line = _encoder.encode(data)
    except (ValueError, TypeError, UnicodeEncodeError, msgspec.EncodeError):
        return None  # a non-finite Decimal or a lone surrogate: the SDK's encoder decides
    if line.isascii() and _DEL not in line:
        return line + b"\n"
    return None


class TapWriter(GenericSingerWriter[bytes, Message]):
    """Writes Singer messages to stdout in order; RECORDs are gathered, everything else flushes.

    Writes are gathered here rather than left to stdout's buffer, because with
    PYTHONUNBUFFERED (set by many launchers) that buffer is gone and every line would cost a
    system call. A signal handler may write too (the SDK writes STATE on SIGTERM, then exits):
    a write from inside `flush` only queues its line behind the ones being written, and lines
    leave the queue before they are written, so none is written twice and no STATE overtakes
    a RECORD before it. Whatever is still queued when the process exits is written then.
    """

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._size = 0
        self._out = memoryview(b"")  # taken from the queue, not yet written
        self._flushing = False
        self._cut = False  # an exit interrupted a write: writing on could split a line
        _WRITERS.add(self)

    def serialize_message(self, message: Message) -> bytes:
        return encode_message(message)

    def write_message(self, message: Message) -> None:
        line = encode_message(message)
        self._lines.append(line)
        self._size += len(line)
        if self._size >= BUFFER_BYTES or not isinstance(message, RecordMessage):
            self.flush()

    def flush(self) -> None:
        """Write every queued line to stdout now."""
        if self._flushing or self._cut:
            return
        self._flushing = True
        try:
            while self._out or self._lines:
                if not self._out:
                    lines = self._lines[:]
                    del self._lines[: len(lines)]
                    self._size = 0
                    self._out = memoryview(b"".join(lines))
                self._cut = True
                written = _write_some(self._out)
                self._out = self._out[written:]
                self._cut = False
        finally:
            self._flushing = False


# Gathered RECORD lines are written once this many bytes wait (and at every other message).
BUFFER_BYTES = 64 * 1024
_WRITERS: weakref.WeakSet[TapWriter] = weakref.WeakSet()


def _write_some(data: memoryview) -> int:
    """Write a prefix of `data` (an unbuffered stdout may take part of a write); its length."""
    stream = sys.stdout
    stream.flush()  # anything written through the text layer goes first
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a text-only stand-in (tests); every line is ASCII
        stream.write(bytes(data).decode("ascii"))
        written = len(data)
    else:
        written = binary.write(data) or 0
    stream.flush()
    return written


@atexit.register
def _flush_all() -> None:
    """Lines still queued when the process ends (an error, sys.exit) are written then."""
    for writer in list(_WRITERS):
        with contextlib.suppress(Exception):
            writer.flush()
