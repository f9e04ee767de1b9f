"""What Marketo answered, as typed values: per-record results and the client's counters."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True)
class RecordResult:
    """Marketo's answer for one input record of a sync or delete, matched by `seq`."""

    seq: int
    status: str  # created | updated | deleted | skipped
    marketo_guid: str | None = None
    reasons: tuple[Reason, ...] = ()
    # The same batch was sent before and Marketo may have applied it (timeout, 604, dropped
    # connection); e.g. a createOnly "already exists" may then be our own earlier write.
    after_uncertain_attempt: bool = False

    @classmethod
    def from_api(cls, raw: Mapping[str, Any], *, after_uncertain_attempt: bool) -> RecordResult:
        return cls(
            seq=int(raw["seq"]),
            status=str(raw.get("status", "skipped")),
            marketo_guid=raw.get("marketoGUID"),
            reasons=tuple(
                Reason(code=str(r.get("code", "")), message=str(r.get("message", "")))
                for r in raw.get("reasons") or ()
            ),
            after_uncertain_attempt=after_uncertain_attempt,
        )


@dataclass
class ClientStats:
    """Counters a caller can read and log. Updated under a lock; read them as a snapshot."""

    calls: int = 0
    calls_by_endpoint: collections.Counter[str] = field(default_factory=collections.Counter)
    retries_by_code: collections.Counter[str] = field(default_factory=collections.Counter)
    reauthentications: int = 0
    limiter_wait_seconds: float = 0.0
    retry_wait_seconds: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "calls_by_endpoint": dict(self.calls_by_endpoint),
            "retries_by_code": dict(self.retries_by_code),
            "reauthentications": self.reauthentications,
            "limiter_wait_seconds": round(self.limiter_wait_seconds, 3),
            "retry_wait_seconds": round(self.retry_wait_seconds, 3),
        }
