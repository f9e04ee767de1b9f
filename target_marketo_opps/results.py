"""Per-record outcomes: the results file, counts, reasons and what counts as a failure."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import threading
from dataclasses import dataclass, field
from typing import BinaryIO

from marketo_api import one_shot_encoder

from .records import (
    TARGET_REASON_LABELS,
    TARGET_SKIP_LABELS,
    Item,
    Outcome,
    has_lone_surrogate,
)
from .terms import Action, Status

EXAMPLES_PER_REASON = 5

# Skips that mean the end state the action asked for already holds.
_BENIGN_SKIPS: dict[str, frozenset[str]] = {
    Action.CREATE_ONLY: frozenset({"1017", "1005"}),
    Action.DELETE: frozenset({"1013"}),
}
_FAILED_STATUSES = frozenset({Status.REJECTED, Status.SKIPPED, Status.WOULD_SKIP})


def is_failure(action: str, outcome: Outcome) -> bool:
    """Whether an outcome counts against `max_rejections`."""
    if outcome.status not in _FAILED_STATUSES:
        return False
    if outcome.status == Status.REJECTED:
        return True
    benign = _BENIGN_SKIPS.get(action, frozenset())
    return not (outcome.reasons and all(r.code in benign for r in outcome.reasons))


@dataclass
class _ReasonGroup:
    code: str
    message: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


class ResultsFileError(Exception):
    """The results file cannot be opened or written (names the path, never record data)."""


# `json.dumps(value, ensure_ascii=False, default=str)`, built once.
_encode_text = one_shot_encoder(ensure_ascii=False, separators=(", ", ": "), default=str)


def encode_line(line: dict[str, object]) -> bytes:
    """One JSONL line in UTF-8; a lone surrogate (valid JSON input, invalid UTF-8) is escaped."""
    text = _encode_text(line)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(line, default=str) + "\n").encode("ascii")


_run_id_lock = threading.Lock()
_last_start: dt.datetime | None = None


def new_run_id() -> str:
    """Unique per run: the start time (UTC, ISO 8601, microseconds) and the process id.

    Within one process the times are made strictly increasing, so two runs never share an id.
    """
    global _last_start
    with _run_id_lock:
        started = dt.datetime.now(dt.timezone.utc)
        if _last_start is not None and started <= _last_start:
            started = _last_start + dt.timedelta(microseconds=1)
        _last_start = started
    return f"{started.isoformat(timespec='microseconds').replace('+00:00', 'Z')}/{os.getpid()}"


class ResultsLog:
    """Records exactly one outcome per input record; main thread only.

    Lines are appended to the file (earlier runs' lines stay), each tagged with this run's `run`
    id. They are buffered here and written whole lines at a time, so a killed run leaves no
    partial line; `sync()` (called before any STATE message is emitted) writes them and fsyncs.
    """

    #: Buffered bytes that trigger a write before the next `sync()`.
    WRITE_THRESHOLD = 256 * 1024

    def __init__(self, path: str | None, *, run_id: str | None = None) -> None:
        self.path = path
        self.run_id = run_id or new_run_id()
        self._file: BinaryIO | None = None
        self._closed = False
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._dirty = False  # written since the last fsync
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.failures = 0
        self._reasons: dict[str, _ReasonGroup] = {}

    def record(self, item: Item, outcome: Outcome) -> None:
        self.counts[(item.stream, outcome.status)] += 1
        if is_failure(item.action, outcome):
            self.failures += 1
        for reason in outcome.reasons:
            group = self._reasons.get(reason.code)
            if group is None:
                group = self._reasons[reason.code] = _ReasonGroup(reason.code, reason.message)
            group.count += 1
            if len(group.examples) < EXAMPLES_PER_REASON:
                key = json.dumps(item.key, separators=(",", ":"), ensure_ascii=False, default=str)
                if has_lone_surrogate(key):  # would break the log handler's UTF-8 encoding
                    key = json.dumps(item.key, separators=(",", ":"), default=str)
                group.examples.append(f"{item.stream} {key}")
        if self.path and not self._closed:
            line = {
                "run": self.run_id,
                "record": item.seq,
                "stream": item.stream,
                "object": item.obj.snake_name,
                "action": item.action,
                "key": item.key,
                "status": outcome.status,
                "marketoGUID": outcome.marketo_guid,
                "reasons": [{"code": r.code, "message": r.message} for r in outcome.reasons],
                "note": outcome.note,
                "line": item.line,
                "batch": None
                if item.batch_file is None
                else {"file": item.batch_file, "line": item.batch_line},
            }
            data = encode_line(line)
            self._pending.append(data)
            self._pending_bytes += len(data)
            if self._pending_bytes >= self.WRITE_THRESHOLD:
                self._write_pending()

    def open(self) -> None:
        """Open the file now (at the start of a run), so an unwritable `results_path` stops the run
        before any record is sent."""
        if not self.path or self._closed:
            return
        try:
            self._open()
        except OSError as exc:
            raise ResultsFileError(
                f"results_path {self.path!r} cannot be opened for appending: {exc.strerror or exc}"
            ) from exc

    def _open(self) -> BinaryIO:
        """The file, opened for appending when the run first writes to it."""
        if self._file is None:
            assert self.path
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            _drop_partial_last_line(self.path)
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        return self._file

    def _write_pending(self) -> None:
        """Append the buffered lines; on failure the file is cut back to whole lines and the
        lines stay buffered, so a later sync (or the next run's repair) finds no partial line."""
        if not self._pending:
            return
        data = memoryview(b"".join(self._pending))
        handle = self._open()
        start = handle.seek(0, os.SEEK_END)
        try:
            while data:
                written = handle.write(data)
                data = data[written or 0 :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                handle.truncate(start)
            raise ResultsFileError(
                f"cannot write to results_path {self.path!r}: {exc.strerror or exc}; "
                f"{len(self._pending)} outcomes are not recorded and no STATE covers them"
            ) from exc
        self._pending, self._pending_bytes = [], 0
        self._dirty = True

    def sync(self) -> None:
        """Make every recorded line durable."""
        self._write_pending()
        if self._file is not None and self._dirty:
            os.fsync(self._file.fileno())
            self._dirty = False

    def close(self, *, create: bool = True) -> None:
        """Write, fsync and close; with `create`, a run without records still creates the file."""
        if self._closed:
            return
        try:
            if self.path and create:
                self._open()
            if self._file is not None or self._pending:
                self.sync()
        finally:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None

    def summary_lines(self) -> list[str]:
        lines: list[str] = []
        streams = sorted({stream for stream, _ in self.counts})
        for stream in streams:
            parts = [
                f"{status} {count}"
                for (name, status), count in sorted(self.counts.items())
                if name == stream and count
            ]
            lines.append(f"Results for stream {stream!r}: {', '.join(parts)}")
        if not streams:
            lines.append("Results: no records received")
        for group in sorted(self._reasons.values(), key=lambda g: (-g.count, g.code)):
            if group.code in TARGET_REASON_LABELS:
                source = f"rejected by the target: {TARGET_REASON_LABELS[group.code]}"
            elif group.code in TARGET_SKIP_LABELS:
                source = f"reported by the target: {TARGET_SKIP_LABELS[group.code]}"
            else:
                source = "reported by Marketo"
            lines.append(
                f"Reason {group.code} ({source}) x{group.count}, e.g. {group.message!r}; "
                f"example keys: {'; '.join(group.examples)}"
            )
        return lines


def _drop_partial_last_line(path: str) -> None:
    """Cut an incomplete last line, so the lines this run appends stay separate, valid JSON.

    `ResultsLog` writes whole lines in one call each time, so a killed run leaves none; a full
    disk or another writer can. Such a line was never covered by a STATE message.
    """
    try:
        handle = open(path, "rb+")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with handle:
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            return
        handle.seek(end - 1)
        if handle.read(1) == b"\n":
            return
        position = end
        while position > 0:
            start = max(0, position - 65536)
            handle.seek(start)
            chunk = handle.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                handle.truncate(start + newline + 1)
                return
            position = start
        handle.truncate(0)
