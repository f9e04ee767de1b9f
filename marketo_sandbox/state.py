"""Runtime state shared by the HTTP handler threads: config, tokens, limits, faults and stats."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import fields as dc_fields
from typing import Any

from .config import RUNTIME_FIELDS, Fault, RecordFault, SandboxConfig
from .faults import FaultPicker, concurrency_message, rate_message
from .store import Record, Store

__all__ = ["SandboxState", "concurrency_message", "rate_message", "validate_changes"]

#: How many write batch sizes ``stats()["write_batch_sizes"]`` keeps per endpoint (the latest).
MAX_BATCH_SIZES_KEPT = 10_000

#: How many admission times ``call_times()`` keeps (the latest), enough for a long benchmark.
MAX_CALL_TIMES_KEPT = 200_000

QUOTA_MESSAGE = "Daily quota reached. The quota resets at 12:00 AM CST"


def validate_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Check a dict of runtime config changes; faults given as dicts become :class:`Fault` (or
    :class:`RecordFault` for ``record_faults``)."""
    known = {f.name for f in dc_fields(SandboxConfig)}
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in known:
            raise ValueError(f"unknown config field {name!r}")
        if name not in RUNTIME_FIELDS:
            raise ValueError(f"config field {name!r} cannot be changed on a running sandbox")
        if name == "faults":
            if not isinstance(value, list):
                raise ValueError("faults must be a list")
            out[name] = [f if isinstance(f, Fault) else Fault(**f) for f in value]
            continue
        if name == "record_faults":
            if not isinstance(value, list) or not all(isinstance(f, RecordFault | dict) for f in value):
                raise ValueError("record_faults must be a list of record faults")
            out[name] = [f if isinstance(f, RecordFault) else RecordFault(**f) for f in value]
            continue
        kind = _FIELD_KINDS.get(name)
        ok = {
            "optional_int": value is None or (isinstance(value, int) and not isinstance(value, bool)),
            "number": isinstance(value, int | float) and not isinstance(value, bool),
            "bool": isinstance(value, bool),
            "str": isinstance(value, str),
        }.get(kind or "", True)
        if not ok:
            raise ValueError(f"invalid value {value!r} for config field {name!r}")
        out[name] = value
    return out


_FIELD_KINDS = {
    "client_id": "str",
    "client_secret": "str",
    "rate_limit": "optional_int",
    "rate_window_seconds": "number",
    "concurrency_limit": "optional_int",
    "daily_quota": "optional_int",
    "max_uri_bytes": "optional_int",
    "max_body_bytes": "optional_int",
    "token_ttl_seconds": "number",
    "latency_seconds": "number",
    "crm_sync": "bool",
    "emit_more_result": "bool",
    "trailing_empty_page": "bool",
    "gzip": "bool",
    "filter_case_sensitive": "bool",
    "filter_values_trimmed": "bool",
    "legacy_param_auth": "str",
    "query_fields_added": "str",
    "spec_complete": "bool",
}


class SandboxState:
    """Everything mutable except the data store. All methods are thread-safe."""

    def __init__(self, config: SandboxConfig, store: Store) -> None:
        self._config = config
        self.store = store
        self.lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._current_token: str | None = None
        self._rate_times: deque[float] = deque()
        self._admitted_times: deque[float] = deque(maxlen=MAX_CALL_TIMES_KEPT)
        self._in_flight = 0
        self._reset_counters()

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, **changes: Any) -> SandboxConfig:
        checked = validate_changes(changes)
        with self.lock:
            self._config = self._config.replace(**checked)
            if "faults" in checked:
                self._faults.reseed(self._config.seed)
            if "record_faults" in checked:
                self._faults.reset_records(self._config.seed)
            return self._config

    # ------------------------------------------------------------------ stats
    def _reset_counters(self) -> None:
        self.rest_calls = 0
        self.identity_calls = 0
        self.calls_by_endpoint: Counter[str] = Counter()
        self.errors_by_code: Counter[str] = Counter()
        self.record_errors_by_code: Counter[str] = Counter()
        self.http_status: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.max_concurrency_seen = self._in_flight
        self.quota_used = 0
        self._rate_times.clear()
        self._admitted_times.clear()
        self._stats_since = time.monotonic()
        self._faults = FaultPicker(self._config.seed)
        self.record_faults_injected: Counter[str] = Counter()
        self.write_batch_sizes: defaultdict[str, deque[int]] = defaultdict(
            lambda: deque(maxlen=MAX_BATCH_SIZES_KEPT)
        )

    def reset_stats(self) -> None:
        """Zero every counter, the REST call numbering, the record-fault counts, the quota and the
        rate window."""
        with self.lock:
            self._reset_counters()

    def stats(self) -> dict[str, Any]:
        with self.lock:
            now = time.monotonic()
            window = self._config.rate_window_seconds
            return {
                "rest_calls": self.rest_calls,
                "identity_calls": self.identity_calls,
                "calls_by_endpoint": dict(self.calls_by_endpoint),
                "errors_by_code": dict(self.errors_by_code),
                "record_errors_by_code": dict(self.record_errors_by_code),
                "http_status": dict(self.http_status),
                "faults_injected": dict(self.faults_injected),
                "record_faults_injected": dict(self.record_faults_injected),
                "write_batch_sizes": {k: list(v) for k, v in self.write_batch_sizes.items()},
                "max_concurrency_seen": self.max_concurrency_seen,
                "in_flight": self._in_flight,
                "quota_used": self.quota_used,
                "rate_window_calls": sum(1 for t in self._rate_times if t > now - window),
                "store": self.store.counts(),
            }

    def call_times(self) -> dict[str, Any]:
        """When each admitted REST call was counted against the rate window, in seconds since
        start or ``reset_stats``: a benchmark measures the rate a client achieved from these."""
        with self.lock:
            since = self._stats_since
            return {
                "now": time.monotonic() - since,
                "rate_window_seconds": self._config.rate_window_seconds,
                "rate_limit": self._config.rate_limit,
                "admitted": [round(t - since, 6) for t in self._admitted_times],
            }

    def count_identity(self, endpoint: str) -> None:
        with self.lock:
            self.identity_calls += 1
            self.calls_by_endpoint[endpoint] += 1

    def begin_rest_call(self, endpoint: str) -> int:
        with self.lock:
            self.rest_calls += 1
            self.calls_by_endpoint[endpoint] += 1
            return self.rest_calls

    def count_status(self, status: int) -> None:
        with self.lock:
            self.http_status[str(status)] += 1

    def count_error(self, code: str) -> None:
        with self.lock:
            self.errors_by_code[code] += 1

    def count_record_errors(self, results: list[dict[str, Any]]) -> None:
        codes = [
            r["reasons"][0]["code"] for r in results if r.get("status") == "skipped" and r.get("reasons")
        ]
        if codes:
            with self.lock:
                self.record_errors_by_code.update(codes)

    def count_write_batch(self, endpoint: str, size: int) -> None:
        """Note the number of input records of a sync or delete call that reached the store."""
        with self.lock:
            self.write_batch_sizes[endpoint].append(size)

    def count_fault(self, kind: str) -> None:
        with self.lock:
            self.faults_injected[kind] += 1

    # ------------------------------------------------------------------ tokens
    def issue_token(self) -> tuple[str, int]:
        """The current token (or a new one) and its remaining lifetime in whole seconds."""
        with self.lock:
            now = time.monotonic()
            token = self._current_token
            if token is None or self._tokens.get(token, 0.0) <= now:
                token = f"{uuid.uuid4()}:sb"
                self._tokens[token] = now + self._config.token_ttl_seconds
                self._current_token = token
            return token, max(0, int(self._tokens[token] - now))

    def check_token(self, token: str) -> str | None:
        """None if valid, else "601" (unknown/revoked) or "602" (expired)."""
        with self.lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return "601"
            if expiry <= time.monotonic():
                return "602"
            return None

    def revoke_tokens(self) -> None:
        with self.lock:
            self._tokens.clear()
            self._current_token = None

    def expire_tokens(self) -> None:
        """Make every issued token expired (REST calls then answer 602)."""
        with self.lock:
            now = time.monotonic()
            for token in self._tokens:
                self._tokens[token] = now

    # ------------------------------------------------------------------ limits
    def try_enter(self, cfg: SandboxConfig) -> bool:
        with self.lock:
            if cfg.concurrency_limit is not None and self._in_flight >= cfg.concurrency_limit:
                return False
            self._in_flight += 1
            self.max_concurrency_seen = max(self.max_concurrency_seen, self._in_flight)
            return True

    def leave(self) -> None:
        with self.lock:
            self._in_flight -= 1

    def admit(self, cfg: SandboxConfig) -> tuple[str, str] | None:
        """Count an accepted call against quota and rate window, or say why it is refused."""
        with self.lock:
            if cfg.daily_quota is not None and self.quota_used >= cfg.daily_quota:
                return "607", QUOTA_MESSAGE
            now = time.monotonic()
            if cfg.rate_limit is not None:
                cutoff = now - cfg.rate_window_seconds
                times = self._rate_times
                while times and times[0] <= cutoff:
                    times.popleft()
                if len(times) >= cfg.rate_limit:
                    return "606", rate_message(cfg)
                times.append(now)
            self._admitted_times.append(now)
            self.quota_used += 1
            return None

    # ------------------------------------------------------------------ faults
    def pick_fault(self, cfg: SandboxConfig, call_no: int, path: str, is_write: bool) -> Fault | None:
        with self.lock:
            return self._faults.pick(cfg, call_no, path, is_write)

    def pick_record_faults(
        self, cfg: SandboxConfig, obj: str, key_fields: tuple[str, ...], records: list[Any]
    ) -> dict[int, Record]:
        """The records of one sync or delete call that ``cfg.record_faults`` skip, by position."""
        if not cfg.record_faults:
            return {}
        with self.lock:
            out = self._faults.pick_records(cfg, obj, key_fields, records)
            self.record_faults_injected.update(r["reasons"][0]["code"] for r in out.values())
        return out
