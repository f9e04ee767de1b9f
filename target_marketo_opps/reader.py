"""Reading Singer input: numbered lines, BATCH files, and errors that name the line they come from."""

from __future__ import annotations

import gzip
import json
import sys
import traceback
import typing as t
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from decimal import Decimal

import msgspec.json
from singer_sdk.exceptions import InvalidJSONSchema, RecordsWithoutSchemaException
from singer_sdk.io_base import SingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json
from upath import UPath

from marketo_api import MarketoError

from .errors import BatchFileError, InputLineError, TargetRunError, UnknownStreamError
from .ledger import LedgerError
from .results import ResultsFileError

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

#: Errors that mean the input is wrong rather than the target or Marketo: reported with the input
#: line and without a traceback.
SDK_INPUT_ERRORS = (InvalidInputLine, RecordsWithoutSchemaException, InvalidJSONSchema, UnknownStreamError)
_INPUT_ERRORS = (BatchFileError, KeyError, TypeError, ValueError)
#: Failures of the input alone, after which Marketo and the results file still work.
FATAL_INPUT_ERRORS = (InputLineError, *SDK_INPUT_ERRORS)
MESSAGE_TYPES = ("SCHEMA", "RECORD", "STATE", "ACTIVATE_VERSION", "BATCH")


class NumberedReader(SingerReader):
    """singer-sdk's reader, counting input lines so every fatal input error can name its line.

    Also accepts a UTF-8 byte order mark before the first message and skips blank lines.

    Lines are decoded by msgspec, several times faster than the SDK's `json.loads`, into the same
    values (ints exact, Decimal for numbers with a fraction or exponent, the last of duplicate keys).
    A line msgspec refuses (invalid JSON, NaN and Infinity, lone surrogates like "\\ud800", ints past
    Python's digit limit) goes to the SDK's decoder, which gives the value or the error of before.
    """

    #: msgspec's decoder, not the SDK's MsgSpecReader, whose errors name neither line nor column.
    _decoder: t.ClassVar[msgspec.json.Decoder[t.Any]] = msgspec.json.Decoder(float_hook=Decimal)

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        #: Lines nested less deeply than this reach the recursion limit in neither decoder.
        self._msgspec_nesting = 0
        #: Called before the first line is read, and when reading stops with an exception.
        self.on_start: t.Callable[[], None] | None = None
        self.on_failure: t.Callable[[], None] | None = None

    @override
    def process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, t.Callable[[dict], None]]
    ) -> t.Counter[str]:
        if self.on_start is not None:
            self.on_start()
        try:
            return self._process_lines(file_input, callbacks)
        except BaseException:
            if self.on_failure is not None:
                self.on_failure()
            raise

    def _process_lines(
        self, file_input: t.IO[str] | None, callbacks: dict[str, t.Callable[[dict], None]]
    ) -> t.Counter[str]:
        stats: dict[str, int] = defaultdict(int)
        # msgspec runs 5 frames shallower than json.loads, so near the recursion limit it could
        # decode a line that json.loads fails on: lines that may nest that deeply go to json.loads.
        self._msgspec_nesting = sys.getrecursionlimit() - sum(1 for _ in traceback.walk_stack(None)) - 50
        lines = iter(file_input or self.default_input)
        while True:
            try:
                line = next(lines)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:
                raise InputLineError(
                    f"Input line {self.line_number + 1} is not UTF-8 text ({exc.reason})"
                ) from exc
            self.line_number += 1
            if self.line_number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            if not line.strip():
                continue
            self._current_message = line
            message = self._parse(line)
            kind = message["type"]
            self._dispatch(callbacks, kind, message)
            stats[kind] += 1
        return Counter(**stats)

    def _parse(self, line: str) -> dict:
        message: t.Any = None
        nesting = self._msgspec_nesting
        # Valid JSON nests at most len/2 deep, and never deeper than its count of brackets.
        if isinstance(line, str) and (len(line) < 2 * nesting or line.count("{") + line.count("[") < nesting):
            try:
                message = self._decoder.decode(line)
            except Exception:  # whatever msgspec refuses, json.loads decides
                message = None
        if message is None:  # also a line that is JSON null: json.loads gives it again
            # Called from here as before, at the same depth: the same lines are nested too deeply.
            try:
                message = deserialize_json(line)
            except RecursionError:
                raise InputLineError(
                    f"Input line {self.line_number} is nested too deeply to be a Singer message"
                ) from None
            except ValueError as exc:
                detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else exc
                raise InputLineError(f"Input line {self.line_number} is not valid JSON: {detail}") from None
        if not isinstance(message, dict):
            raise InputLineError(
                f"Input line {self.line_number} is a JSON {type(message).__name__}, not a Singer message"
            )
        kind = message.get("type")
        if kind not in MESSAGE_TYPES:
            what = "has no 'type'" if kind is None else f"has an unknown message type {kind!r}"
            raise InputLineError(
                f"Input line {self.line_number} {what}; expected one of {', '.join(MESSAGE_TYPES)}"
            )
        return message

    def _dispatch(self, callbacks: dict[str, t.Callable[[dict], None]], kind: str, message: dict) -> None:
        callback = callbacks.get(kind)
        if callback is None:
            self._process_unknown_message(message)
            return
        try:
            callback(message)
        except SDK_INPUT_ERRORS as exc:
            # Same exception (callers and singer-sdk's tests expect its type), with the line.
            exc.args = (f"Input line {self.line_number} ({kind}): {exc}", *exc.args[1:])
            raise
        except (TargetRunError, MarketoError, ResultsFileError, LedgerError):
            raise
        except _INPUT_ERRORS as exc:
            text = str(exc) if not isinstance(exc, KeyError) else f"missing {exc}"
            raise InputLineError(f"Input line {self.line_number} ({kind}): {text}") from exc


def batch_compression(encoding: t.Any) -> str | None:
    """The compression of a BATCH message's files; anything but JSONL (plain or gzip) is refused."""
    if not isinstance(encoding, dict):
        raise BatchFileError(f"'encoding' must be an object, got {encoding!r}")
    file_format = encoding.get("format")
    if file_format != "jsonl":
        raise BatchFileError(
            f"batch files in format {file_format!r} cannot be read; this target reads jsonl (plain or "
            'gzip): set the tap\'s batch_config encoding to {"format": "jsonl"}'
        )
    compression = encoding.get("compression")
    if compression in (None, "none"):
        return None
    if compression != "gzip":
        raise BatchFileError(
            f"batch files compressed with {compression!r} cannot be read; this target reads jsonl "
            "plain or gzip"
        )
    return "gzip"


def batch_records(url: str, compression: str | None) -> Iterator[tuple[int, t.Any]]:
    """(line number, parsed line) for every non-blank line of one batch file."""
    number = 0
    try:
        with UPath(url).open("rb") as raw:
            source = gzip.open(raw) if compression == "gzip" else raw  # noqa: SIM115 - closed with raw
            for number, line in enumerate(source, start=1):
                if not line.strip():
                    continue
                try:
                    record = deserialize_json(line)
                except ValueError as exc:
                    raise BatchFileError(f"batch file {url} line {number} is not valid JSON: {exc}") from None
                yield number, record
    except (OSError, EOFError, zlib.error) as exc:
        where = f" at line {number + 1}" if number else ""
        raise BatchFileError(f"batch file {url} cannot be read{where}: {exc}") from exc
