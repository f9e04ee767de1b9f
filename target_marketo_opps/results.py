"""Per-record outcomes: the results file, counts, reasons and what counts as a failure."""

from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass, field
from typing import IO, Any

from .records import DELETE_ACTION, TARGET_REASON_LABELS, Item, Outcome, dumps

EXAMPLES_PER_REASON = 5

# Skips that mean the end state the action asked for already holds.
_BENIGN_SKIPS = {"createOnly": frozenset({"1017", "1005"}), DELETE_ACTION: frozenset({"1013"})}
_FAILED_STATUSES = frozenset({"rejected", "skipped", "would_skip"})


def is_failure(action: str, outcome: Outcome) -> bool:
    """Whether an outcome counts against `max_rejections`."""
    if outcome.status not in _FAILED_STATUSES:
        return False
    if outcome.status == "rejected":
        return True
    benign = _BENIGN_SKIPS.get(action, frozenset())
    return not (outcome.reasons and all(r.code in benign for r in outcome.reasons))


@dataclass
class _ReasonGroup:
    code: str
    message: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


class ResultsLog:
    """Records exactly one outcome per input record; main thread only.

    Lines are buffered and reach the disk (flush + fsync) in `sync()`, which the target calls
    before it emits any STATE message.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._closed = False
        self._dirty = False
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.failures = 0
        self.recorded = 0
        self._reasons: dict[str, _ReasonGroup] = {}

    def record(self, item: Item, outcome: Outcome) -> None:
        self.recorded += 1
        self.counts[(item.stream, outcome.status)] += 1
        if is_failure(item.action, outcome):
            self.failures += 1
        for reason in outcome.reasons:
            group = self._reasons.get(reason.code)
            if group is None:
                group = self._reasons[reason.code] = _ReasonGroup(reason.code, reason.message)
            group.count += 1
            if len(group.examples) < EXAMPLES_PER_REASON:
                group.examples.append(f"{item.stream} {dumps(item.key)}")
        if self.path and not self._closed:
            line = {
                "record": item.seq,
                "stream": item.stream,
                "object": "opportunity" if item.obj.value == "opportunities" else "opportunity_role",
                "action": item.action,
                "key": item.key,
                "status": outcome.status,
                "marketoGUID": outcome.marketo_guid,
                "reasons": [{"code": r.code, "message": r.message} for r in outcome.reasons],
                "note": outcome.note,
            }
            self._open().write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            self._dirty = True

    def _open(self) -> IO[str]:
        """The file, created (or emptied) when the run records its first outcome."""
        if self._file is None:
            assert self.path
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        return self._file

    def sync(self) -> None:
        """Make every recorded line durable."""
        if self._file is not None and self._dirty:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._dirty = False

    def close(self, *, create: bool = True) -> None:
        """Flush and close; with `create`, a run without records still leaves an empty file."""
        if self._closed:
            return
        if self.path and create:
            self._open()
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None
        self._closed = True

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
            else:
                source = "reported by Marketo"
            lines.append(
                f"Reason {group.code} ({source}) x{group.count}, e.g. {group.message!r}; "
                f"example keys: {'; '.join(group.examples)}"
            )
        return lines

    def snapshot(self) -> dict[str, Any]:
        return {
            "counts": {f"{s}:{st}": c for (s, st), c in sorted(self.counts.items())},
            "failures": self.failures,
        }
