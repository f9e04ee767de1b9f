"""Injected failures: which call or record a fault hits, and what the client then sees.

A fault answers before the call runs, after a write is applied (``after_apply``), as a dropped
connection, as a slow answer, or as a write applied late after its connection dropped. Limits,
latency and faults apply to REST calls only, never to Identity or ``/_sandbox``.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import WRITE_ONLY_FAULT_KINDS, Fault, SandboxConfig
from .params import ApiError
from .store import OPPORTUNITIES, Record, skipped

if TYPE_CHECKING:
    from .state import SandboxState

FAULT_MESSAGES = {
    "603": "Access denied",
    "604": "Request timed out",
    "608": "API Temporarily Unavailable",
    "611": "System error",
    "614": "Invalid Subscription",
    "713": "Transient Error",
}

#: Store object name -> :attr:`RecordFault.object` value.
_RECORD_FAULT_OBJECT = {OPPORTUNITIES: "opportunity"}


class Dropped(Exception):
    """Close the connection without answering."""


def rate_message(cfg: SandboxConfig) -> str:
    return f"Max rate limit '{cfg.rate_limit or 100}' exceeded with in '{cfg.rate_window_seconds:g}' secs"


def concurrency_message(cfg: SandboxConfig) -> str:
    return f"Concurrent access limit '{cfg.concurrency_limit or 10}' reached"


class FaultPicker:
    """The random draws and per-record counts behind faults, seeded from ``cfg.seed`` so a run
    repeats. Not thread-safe: :class:`~marketo_sandbox.state.SandboxState` holds its lock."""

    def __init__(self, seed: int) -> None:
        self.reseed(seed)
        self.reset_records(seed)

    def reseed(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def reset_records(self, seed: int) -> None:
        # (fault index, object, record identity) -> times that record was skipped by that fault
        self._hits: Counter[tuple[int, str, tuple[str, ...]]] = Counter()
        self._record_rng = random.Random(seed)

    def pick(self, cfg: SandboxConfig, call_no: int, path: str, is_write: bool) -> Fault | None:
        """The first fault matching this call; ``calls`` decides before ``rate``."""
        for fault in cfg.faults:
            if fault.path and not path.startswith(fault.path):
                continue
            if (fault.after_apply or fault.kind in WRITE_ONLY_FAULT_KINDS) and not is_write:
                continue
            if fault.calls is not None:
                if call_no in fault.calls:
                    return fault
                continue
            if fault.rate is not None:
                if self._rng.random() < fault.rate:
                    return fault
                continue
            return fault
        return None

    def pick_records(
        self, cfg: SandboxConfig, obj: str, key_fields: tuple[str, ...], records: list[Any]
    ) -> dict[int, Record]:
        """The skipped results (by input position) that ``cfg.record_faults`` inject in one call.

        ``key_fields`` are the fields identifying a record in this call's mode (the dedupe
        fields, or the id field); ``times`` is counted per such identity. Records that are not
        objects or lack a key field are left to the normal validation.
        """
        object_name = _RECORD_FAULT_OBJECT.get(obj, "opportunity_role")
        out: dict[int, Record] = {}
        for seq, rec in enumerate(records):
            if not isinstance(rec, dict):
                continue
            values = [rec.get(name) for name in key_fields]
            if any(v is None or v == "" or isinstance(v, dict | list) for v in values):
                continue
            identity = tuple(str(v) for v in values)
            names = {
                str(rec[name])
                for name in ("externalOpportunityId", "marketoGUID")
                if rec.get(name) is not None
            }
            for index, fault in enumerate(cfg.record_faults):
                if fault.object is not None and fault.object != object_name:
                    continue
                if fault.keys is not None and names.isdisjoint(fault.keys):
                    continue
                hit = (index, obj, identity)
                if fault.times is not None and self._hits[hit] >= fault.times:
                    continue
                if fault.rate is not None and self._record_rng.random() >= fault.rate:
                    continue
                self._hits[hit] += 1
                out[seq] = skipped(seq, fault.code, fault.message)
                break
        return out


def before_call(
    state: SandboxState,
    cfg: SandboxConfig,
    *,
    call_no: int,
    path: str,
    is_write: bool,
    execute: Callable[[], object],
) -> Fault | None:
    """Latency, then the fault this call draws. ``slow`` sleeps here and the call goes on;
    ``late`` schedules ``execute`` and drops the connection now; any other fault is returned for
    the caller to answer (before the call runs, or after it when ``after_apply``)."""
    if cfg.latency_seconds > 0:
        time.sleep(cfg.latency_seconds)
    fault = state.pick_fault(cfg, call_no, path, is_write)
    if fault is None:
        return None
    if fault.kind == "slow":
        state.count_fault("slow")
        time.sleep(fault.seconds)
        return None
    if fault.kind == "late":
        _apply_late(state, fault.seconds, execute)
        state.count_fault("late")
        raise Dropped
    return fault


def _apply_late(state: SandboxState, seconds: float, execute: Callable[[], object]) -> None:
    """Apply this write ``seconds`` from now, after its client saw the connection drop."""

    def apply() -> None:
        with contextlib.suppress(Exception):  # a late write that fails leaves no trace, like Marketo
            execute()
            state.count_fault("late_applied")

    timer = threading.Timer(seconds, apply)
    timer.daemon = True
    timer.start()


def answer(state: SandboxState, cfg: SandboxConfig, fault: Fault) -> ApiError | int:
    """What the client gets for ``fault``: a Marketo error, or the HTTP status of an HTML page."""
    state.count_fault(fault.kind)
    kind = fault.kind
    if kind == "drop":
        raise Dropped
    if kind.startswith("http"):
        return int(kind[4:])
    if kind == "606":
        return ApiError("606", rate_message(cfg))
    if kind == "615":
        return ApiError("615", concurrency_message(cfg))
    return ApiError(kind, FAULT_MESSAGES[kind])
