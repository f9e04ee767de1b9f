"""The bad-input corpus (tests/data/bad_inputs/): one target run per file, classified strictly.

Outcome classes (an item passes when its class is one the index accepts and nothing is lost):

* ``all_written``: exit 0; every record, good or hostile, is written and in Marketo.
* ``bad_rejected``: exit 0; every good record is written and in Marketo; every hostile record has
  one outcome line with an accepted status (rejected/skipped with a reason, or as the index says).
* ``run_failed``: exit non-zero; the log names the hostile line (``line N``) and holds no Python
  traceback; every record before that line has an outcome line.
* ``unclear_failure``: exit non-zero without naming the line, or with a traceback.
* ``good_not_written``: exit 0 but a good record was rejected or skipped.
* ``bad_mishandled``: exit 0 but a hostile record ended in a status the index does not accept.

Lost records: a record with no outcome line in a run that exited 0 (hostile records counted by
the index), a record before the hostile line with none in a failed run, a record whose outcome
says written that Marketo does not hold, and every record a STATE was emitted past before it had
an outcome line.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    TARGET,
    WRITTEN,
    connection,
    result_key,
    results_lines,
    run_cli,
    singer_lines,
    start_sandbox,
    write_json,
)

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "bad_inputs"
TRACEBACK = "Traceback (most recent call last)"

#: (stream, key) -> the stored record, or None.
Lookup = Callable[[str, dict[str, Any]], dict[str, Any] | None]


@dataclass
class ItemOutcome:
    file: str
    description: str
    acceptable: list[str]
    observed: str
    returncode: int
    names_line: bool
    traceback: bool
    good: int
    written: int
    rejected: int
    not_reached: int
    bad_outcomes: list[str]
    lost: int
    state_ahead: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    bad_line: int | None = None

    @property
    def passed(self) -> bool:
        return self.observed in self.acceptable and self.lost == 0


def names_line(stderr: str, line: int | None) -> bool:
    if line is None:
        return False
    return re.search(rf"\bline[ :#]*{line}\b", stderr, re.IGNORECASE) is not None


def classify(  # noqa: PLR0917 (one run's observations, named at every call)
    entry: dict[str, Any],
    returncode: int,
    stderr: str,
    rows: list[dict[str, Any]],
    states: list[dict[str, Any]],
    lookup: Lookup,
) -> ItemOutcome:
    """Apply the rules of the module docstring to one run."""
    bad_line = entry.get("bad_line")
    goods = entry["good"]
    good_keys = {(g["stream"], json.dumps(g["key"], sort_keys=True)): g for g in goods}
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    others: list[dict[str, Any]] = []
    for row in rows:
        key = result_key(row)
        if key in good_keys:
            by_key.setdefault(key, []).append(row)
        else:
            others.append(row)
    notes: list[str] = []
    lost = written = rejected = not_reached = 0
    good_failed = False
    has_outcome: dict[int, bool] = {}  # by id() of the good entry: a BATCH line holds several
    for key, good in good_keys.items():
        found = by_key.get(key, [])
        times = int(good.get("times", 1))
        if found and len(found) != times:
            notes.append(f"line {good['line']}: {len(found)} outcome lines for {times} record(s)")
            if len(found) < times and returncode == 0:
                lost += times - len(found)
        if not found:
            continue
        status = found[-1].get("status")
        if status in WRITTEN:
            stored = lookup(good["stream"], good["key"])
            if stored is None or ("name" in good and stored.get("name") != good["name"]):
                lost += 1
                notes.append(f"line {good['line']}: outcome {status} but Marketo does not hold it")
            else:
                written += 1
        else:
            rejected += 1
            good_failed = True
            notes.append(f"good record at line {good['line']} {status}: {_reasons(found[-1])}")
    bad_count = len(entry.get("bad_lines") or [])
    failed = returncode != 0
    traceback = TRACEBACK in stderr
    line_named = names_line(stderr, bad_line)
    for good in goods:
        has_outcome[id(good)] = bool(by_key.get((good["stream"], json.dumps(good["key"], sort_keys=True))))
    silent: list[int] = []
    for good in goods:
        if has_outcome.get(id(good), False):
            continue
        if failed and bad_line is not None and good["line"] >= bad_line:
            not_reached += 1
        else:
            silent.append(good["line"])
    if silent:
        lost += len(silent)
        notes.insert(0, f"{len(silent)} good record(s) without an outcome line (lines {_spans(silent)})")
    bad_outcomes = [str(r.get("status")) for r in others]
    bad_ok = True
    for row in others:
        status = row.get("status")
        if status not in entry.get("bad_statuses", ["rejected", "skipped"]):
            bad_ok = False
            notes.append(f"hostile record ended {status}")
        elif status in ("rejected", "skipped") and not row.get("reasons"):
            bad_ok = False
            notes.append(f"hostile record {status} without a reason")
        elif status in WRITTEN and not _stored_as_asked(entry, row, lookup, notes):
            bad_ok = False
    if not failed and len(others) < bad_count:
        lost += bad_count - len(others)
        notes.append(f"{bad_count - len(others)} hostile record(s) without an outcome line")
    state_ahead = _states_ahead(entry, states, has_outcome, len(others))
    if state_ahead:
        notes.append(f"{state_ahead} STATE message(s) emitted ahead of outcomes")
    lost += state_ahead
    if failed:
        observed = "run_failed" if line_named and not traceback else "unclear_failure"
    elif good_failed:
        observed = "good_not_written"
    elif not bad_ok:
        observed = "bad_mishandled"
    elif others and all(r.get("status") in WRITTEN for r in others):
        observed = "all_written"
    elif others or bad_count:
        observed = "bad_rejected"
    else:
        observed = "all_written"
    return ItemOutcome(
        entry["file"],
        entry["description"],
        entry["acceptable"],
        observed,
        returncode,
        line_named,
        traceback,
        len(goods),
        written,
        rejected,
        not_reached,
        bad_outcomes,
        lost,
        state_ahead,
        notes=notes[:4],
        bad_line=bad_line,
    )


def _spans(lines: list[int]) -> str:
    """1, 2, 3, 7 -> "1-3, 7"."""
    spans: list[list[int]] = []
    for line in sorted(set(lines)):
        if spans and line == spans[-1][1] + 1:
            spans[-1][1] = line
        else:
            spans.append([line, line])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)


def _reasons(row: dict[str, Any]) -> str:
    return "; ".join(f"{r.get('code')}: {r.get('message')}" for r in row.get("reasons") or [])[:200]


def _stored_as_asked(entry: dict[str, Any], row: dict[str, Any], lookup: Lookup, notes: list[str]) -> bool:
    stored = lookup(str(row.get("stream")), row.get("key") or {})
    if stored is None:
        notes.append(f"hostile record {row.get('status')} but not in Marketo")
        return False
    want = entry.get("stored")
    if want and stored.get(want["field"]) not in want["values"]:
        notes.append(f"hostile record stored {want['field']}={stored.get(want['field'])!r}")
        return False
    return True


def _states_ahead(
    entry: dict[str, Any], states: list[dict[str, Any]], has_outcome: dict[int, bool], bad_outcomes: int
) -> int:
    """Records lacking an outcome line that some emitted STATE (value {"line": n}) came after."""
    worst = 0
    for value in states:
        line = value.get("line") if isinstance(value, dict) else None
        if not isinstance(line, int):
            continue
        missing = sum(1 for g in entry["good"] if g["line"] < line and not has_outcome.get(id(g), False))
        bad_before = sum(1 for n in entry.get("bad_lines") or [] if n < line)
        missing += max(0, bad_before - bad_outcomes)
        worst = max(worst, missing)
    return worst


def load_index() -> list[dict[str, Any]]:
    return list(json.loads((CORPUS / "index.json").read_text(encoding="utf-8")))


def run_item(entry: dict[str, Any], workdir: Path) -> ItemOutcome:
    """Copy one corpus file (filling in @DIR@), run the target on it, classify the outcome."""
    source = CORPUS / entry["file"]
    data = source.read_bytes()
    if entry.get("template"):
        shutil.copytree(CORPUS / "batch", workdir / "batch", dirs_exist_ok=True)
        data = data.replace(b"@DIR@", str(workdir).encode())
    given = workdir / entry["file"]
    given.write_bytes(data)
    sb = start_sandbox(leads=60, opportunities=5, heavy_leads=0)
    try:
        results = workdir / "results.jsonl"
        config = write_json(
            workdir / "target.json", connection(sb, results_path=str(results), max_rejections=None)
        )
        done = run_cli(
            [TARGET, "--config", str(config)],
            stdin=given,
            stdout=workdir / "target.out",
            stderr=workdir / "target.err",
            timeout=120,
        )

        def lookup(stream: str, key: dict[str, Any]) -> dict[str, Any] | None:
            eid = key.get("externalOpportunityId")
            if not isinstance(eid, str):
                return None
            if stream == "opportunity_roles":
                lead, role = key.get("leadId"), key.get("role")
                return (
                    sb.store.role(eid, lead, role)
                    if isinstance(lead, int) and isinstance(role, str)
                    else None
                )
            return sb.store.opportunity(eid)

        outcome = classify(
            entry,
            done.returncode,
            done.stderr_text(),
            results_lines(results),
            singer_lines(done.stdout),  # a target prints bare STATE values
            lookup,
        )
        outcome.seconds = done.seconds
        if done.returncode != 0 and not outcome.names_line:
            outcome.notes.append("log: " + _error_line(done.stderr_text()))
        return outcome
    finally:
        sb.stop()


def _error_line(log: str) -> str:
    lines = [line for line in log.splitlines() if "ERROR" in line or "Error" in line or "error" in line]
    return (lines[-1] if lines else (log.strip().splitlines() or ["(empty log)"])[-1])[-240:]
