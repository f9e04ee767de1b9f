"""Fault trials: the tap and the target run with one class of fault injected, then checked.

The tap must emit every opportunity and role the sandbox holds for its leads, once; the target
must leave Marketo exactly as its input asks and give every record one outcome line, with no
STATE ahead of the outcomes on disk.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketo_sandbox import Fault, RecordFault, Sandbox
from marketo_singer import SETTINGS_JSON_SCHEMA

from . import workload
from .common import TAP, TARGET, connection, results_lines, run_cli, singer_lines, start_sandbox, write_json

#: Advanced settings that would let "slow beyond timeout" cost seconds instead of a minute.
TIMEOUT_SETTINGS = ("query_timeout_seconds", "write_timeout_seconds")
DEFAULT_TIMEOUTS = {"tap": 30.0, "target": 60.0}


@dataclass(frozen=True)
class FaultClass:
    name: str
    description: str
    faults: Callable[[str], list[Fault]] = lambda who: []
    record_faults: list[RecordFault] = field(default_factory=list)
    revoke_every: int | None = None
    targets_only: bool = False
    settle_seconds: float = 0.0


def timeouts_configurable() -> bool:
    return all(name in SETTINGS_JSON_SCHEMA["properties"] for name in TIMEOUT_SETTINGS)


def _rate(kind: str, rate: float, **extra: Any) -> Callable[[str], list[Fault]]:
    return lambda who: [Fault(kind=kind, rate=rate, **extra)]


def _slow(who: str) -> list[Fault]:
    if timeouts_configurable():
        return [Fault(kind="slow", rate=0.1, seconds=2.5)]
    # Without a timeout setting one call waits out the real timeout (30 s query, 60 s write).
    return [Fault(kind="slow", calls=[4], seconds=DEFAULT_TIMEOUTS[who] + 1)]


def fault_classes(size: str) -> list[FaultClass]:
    classes = [
        FaultClass("606", "rate limit exceeded, rate 0.2", _rate("606", 0.2)),
        FaultClass("615", "concurrent access limit, rate 0.2", _rate("615", 0.2)),
        FaultClass("604", "request timed out (Marketo side), rate 0.2", _rate("604", 0.2)),
        FaultClass("608", "API temporarily unavailable, rate 0.2", _rate("608", 0.2)),
        FaultClass("611", "system error (retried 3 times at most), rate 0.1", _rate("611", 0.1)),
        FaultClass("713", "transient service error, rate 0.2", _rate("713", 0.2)),
        FaultClass(
            "5xx HTML",
            "HTTP 500, 502 and 503 with HTML bodies, rate 0.07 each",
            lambda who: [Fault(kind=k, rate=0.07) for k in ("http500", "http502", "http503")],
        ),
        FaultClass("drop", "connection closed without an answer, rate 0.15", _rate("drop", 0.15)),
        FaultClass(
            "drop after apply",
            "write applied, then the connection closed (outcome unknown), rate 0.2",
            _rate("drop", 0.2, after_apply=True),
            targets_only=True,
        ),
        FaultClass(
            "delayed apply",
            "write's connection dropped, the write applied 1.5 s later, rate 0.2",
            _rate("late", 0.2, seconds=1.5),
            targets_only=True,
            settle_seconds=2.5,
        ),
        FaultClass("token revocation", "every token revoked after every 10th REST call", revoke_every=10),
        FaultClass(
            "record skips",
            "records of 4 opportunities (and their roles) skipped once each with 1014, 1019, 1022 or 1029",
            record_faults=[
                RecordFault(code=code, keys=[f"R-{n:04d}"], times=1)
                for code, n in (("1014", 2), ("1019", 7), ("1022", 11), ("1029", 16))
            ],
            targets_only=True,
        ),
    ]
    if size == "full" or timeouts_configurable():
        settle = 3.0 if timeouts_configurable() else DEFAULT_TIMEOUTS["target"] + 3
        desc = (
            "answer 2.5 s late against 1.5 s timeouts, rate 0.1"
            if timeouts_configurable()
            else "one call answers 1 s after the default timeout (30 s query, 60 s write)"
        )
        classes.append(FaultClass("slow beyond timeout", desc, _slow, settle_seconds=settle))
    return classes


@dataclass
class Trial:
    fault: str
    connector: str
    returncode: int
    records: int
    written: int
    rejected: int
    lost: int
    duplicates: int
    state_ahead: int
    injected: int
    retries: int
    reauths: int
    seconds: float
    notes: list[str]


RETRIES_TAP = re.compile(r"Marketo calls: [\d,]+ made, of which ([\d,]+) retries")
RETRIES_TARGET = re.compile(r"'retries_by_code': \{([^}]*)\}")
REAUTHS = re.compile(r"'reauthentications': (\d+)")
RENEW = re.compile(r"renewing the access token")


def retries_from_log(log: str, connector: str) -> tuple[int, int]:
    """Retries and token renewals as the connector itself counted them (its end-of-run log line)."""
    reauths = len(RENEW.findall(log))
    if connector == "tap":
        found = RETRIES_TAP.findall(log)
        return (int(found[-1].replace(",", "")) if found else -1), reauths
    found = RETRIES_TARGET.findall(log)
    if not found:
        return -1, reauths
    return sum(int(n) for n in re.findall(r": (\d+)", found[-1])), reauths


class Revoker:
    """Revokes every token of a sandbox after every `every`-th REST call while a connector runs."""

    def __init__(self, sandbox: Sandbox, every: int | None) -> None:
        self.count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if every:
            self._thread = threading.Thread(target=self._loop, args=(sandbox, every), daemon=True)
            self._thread.start()

    def _loop(self, sandbox: Sandbox, every: int) -> None:
        revoked_at = 0
        while not self._stop.wait(0.005):
            calls = sandbox.stats()["rest_calls"]
            if calls >= revoked_at + every:
                sandbox.revoke_tokens()
                revoked_at = calls
                self.count += 1

    def stop(self) -> int:
        self._stop.set()
        if self._thread:
            self._thread.join()
        return self.count


def _timeouts(fault: FaultClass) -> dict[str, Any]:
    if fault.name == "slow beyond timeout" and timeouts_configurable():
        return dict.fromkeys(TIMEOUT_SETTINGS, 1.5)
    return {}


def target_trial(fault: FaultClass, workdir: Path, count: int) -> Trial:
    sb = start_sandbox(
        leads=60,
        opportunities=5,
        heavy_leads=0,
        faults=fault.faults("target"),
        record_faults=fault.record_faults,
    )
    try:
        seeded = [o["externalOpportunityId"] for o in sb.store.opportunities()[:2]]
        messages = workload.target_input(count, 60, seeded)
        seeded_roles = sb.store.roles()
        expected = workload.expected_end(seeded_roles, messages)
        source = workload.write_singer(workdir / "input.singer", messages)
        results = workdir / "results.jsonl"
        config = write_json(
            workdir / "target.json",
            connection(
                sb,
                results_path=str(results),
                max_rejections=None,
                batch_size_rows=20,
                max_retry_seconds=240,
                **_timeouts(fault),
            ),
        )
        revoker = Revoker(sb, fault.revoke_every)
        done = run_cli(
            [TARGET, "--config", str(config)],
            stdin=source,
            stdout=workdir / "target.out",
            stderr=workdir / "target.err",
        )
        revocations = revoker.stop()
        time.sleep(fault.settle_seconds)  # late writes land in Marketo after the run ended
        verdict = workload.Verdict()
        rows = results_lines(results)
        workload.check_outcomes(rows, len(workload.records_of(messages)), verdict)
        workload.check_store(sb, expected, verdict, workload.unconfirmed(seeded_roles, messages, rows))
        verdict.state_ahead = workload.states_ahead(singer_lines(done.stdout), messages, rows)
        verdict.lost += verdict.state_ahead
        stats = sb.stats()
        retries, reauths = retries_from_log(done.stderr_text(), "target")
        injected = sum(v for k, v in stats["faults_injected"].items() if k != "late_applied")
        injected += sum(stats["record_faults_injected"].values()) + revocations
        if done.returncode != 0:
            verdict.note(f"exit {done.returncode}: {_last_error(done.stderr_text())}")
        return Trial(
            fault.name,
            "target",
            done.returncode,
            verdict.records,
            verdict.written,
            verdict.rejected,
            verdict.lost,
            verdict.duplicates,
            verdict.state_ahead,
            injected,
            retries,
            reauths,
            done.seconds,
            verdict.notes,
        )
    finally:
        sb.stop()


def tap_trial(fault: FaultClass, workdir: Path, leads: int) -> Trial:
    sb = start_sandbox(leads=leads, opportunities=leads * 2 // 5, faults=fault.faults("tap"))
    try:
        expected = workload.tap_expected(sb, 1, leads)
        config = write_json(
            workdir / "tap.json",
            connection(
                sb, lead_id_range={"start": 1, "end": leads}, max_retry_seconds=240, **_timeouts(fault)
            ),
        )
        revoker = Revoker(sb, fault.revoke_every)
        done = run_cli(
            [TAP, "--config", str(config)], stdin=None, stdout=workdir / "tap.out", stderr=workdir / "tap.err"
        )
        revocations = revoker.stop()
        emitted, states = workload.tap_emitted(singer_lines(done.stdout))
        notes: list[str] = []
        lost = duplicates = 0
        for stream, want in expected.items():
            got = emitted[stream]
            missing = want - set(got)
            lost += len(missing)
            duplicates += len(got) - len(set(got))
            if missing:
                notes.append(f"{len(missing)} {stream} not emitted")
            extra = set(got) - want
            if extra:
                notes.append(f"{len(extra)} {stream} emitted that the leads do not reach")
        if done.returncode != 0:
            notes.append(f"exit {done.returncode}: {_last_error(done.stderr_text())}")
        if not states:
            notes.append("no STATE emitted")
        retries, reauths = retries_from_log(done.stderr_text(), "tap")
        stats = sb.stats()
        records = sum(len(v) for v in expected.values())
        return Trial(
            fault.name,
            "tap",
            done.returncode,
            records,
            records - lost,
            0,
            lost,
            duplicates,
            0,
            sum(stats["faults_injected"].values()) + revocations,
            retries,
            reauths,
            done.seconds,
            notes,
        )
    finally:
        sb.stop()


def _last_error(log: str) -> str:
    lines = [line for line in log.splitlines() if "ERROR" in line or "Error" in line]
    return (lines[-1] if lines else (log.strip().splitlines() or [""])[-1])[-300:]
