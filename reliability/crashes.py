"""SIGKILL trials: kill the tap or the target at a seeded random moment, rerun, check the union.

The tap is killed once its output reaches a seeded random fraction of a clean run's output, the
target after a seeded random number of write calls; both with a seeded extra delay of up to
50 ms, so kills land before, between and inside calls and rerunning the report kills at about
the same places.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marketo_sandbox import Sandbox

from . import workload
from .common import (
    TAP,
    TARGET,
    WRITTEN,
    connection,
    key_of,
    results_lines,
    run_cli,
    singer_lines,
    start_sandbox,
    write_json,
)


@dataclass
class CrashTrial:
    connector: str
    number: int
    kill_point: str
    killed: bool
    resumed_from_state: bool
    records: int
    lost: int
    duplicates: int
    state_ahead: int
    rerun_exit: int
    notes: list[str]


def _after_writes(sandbox: Sandbox, calls: int, delay: float) -> Callable[[], bool]:
    """True `delay` seconds after the sandbox has seen `calls` write calls."""

    def made() -> bool:
        writes = sandbox.stats()["calls_by_endpoint"]
        return (
            sum(n for label, n in writes.items() if label.startswith("POST /rest/v1/opportunities")) >= calls
        )

    return _delayed(made, delay)


def _after_output(path: Path, size: int, delay: float) -> Callable[[], bool]:
    """True `delay` seconds after the file at `path` has reached `size` bytes."""
    return _delayed(lambda: path.exists() and path.stat().st_size >= size, delay)


def _delayed(condition: Callable[[], bool], delay: float) -> Callable[[], bool]:
    hit_at: list[float] = []

    def due() -> bool:
        if not hit_at:
            if not condition():
                return False
            hit_at.append(time.monotonic())
        return time.monotonic() - hit_at[0] >= delay

    return due


def _checkpoint(state: Any) -> int | None:
    """The key batches a tap STATE says are done mid-run (None: no checkpoint in it)."""
    try:
        done = state["bookmarks"]["key_batches"]["checkpoint"]["batches_done"]
    except (KeyError, TypeError):
        return None
    return done if isinstance(done, int) else None


def tap_trials(workdir: Path, count: int, seed: int, leads: int) -> list[CrashTrial]:
    """`count` kills of one tap run over leads 1..`leads`, each followed by a run resumed from STATE."""
    rng = random.Random(seed)
    # As many opportunities as leads: the follow-up pool fills at every batch, so checkpoints come often.
    sb = start_sandbox(leads=leads, opportunities=leads, latency_seconds=0.03)
    trials = []
    try:
        expected = workload.tap_expected(sb, 1, leads)
        config = write_json(workdir / "tap.json", connection(sb, lead_id_range={"start": 1, "end": leads}))
        catalog = workdir / "catalog.json"
        run_cli(
            [TAP, "--config", str(config), "--discover"],
            stdin=None,
            stdout=catalog,
            stderr=workdir / "discover.err",
        )
        sb.reset_stats()
        reference = run_cli(
            [TAP, "--config", str(config), "--catalog", str(catalog)],
            stdin=None,
            stdout=workdir / "reference.out",
            stderr=workdir / "reference.err",
        )
        total_bytes = reference.stdout.stat().st_size
        if reference.returncode != 0:
            raise RuntimeError(f"the tap's reference run failed; see {reference.stderr}")
        for number in range(1, count + 1):
            trial_dir = workdir / f"trial-{number:02d}"
            trial_dir.mkdir()
            size = int(rng.uniform(0, 1) * total_bytes)
            sb.configure(latency_seconds=0.03)
            sb.reset_stats()
            first = run_cli(
                [TAP, "--config", str(config), "--catalog", str(catalog)],
                stdin=None,
                stdout=trial_dir / "killed.out",
                stderr=trial_dir / "killed.err",
                kill_when=_after_output(trial_dir / "killed.out", size, rng.uniform(0, 0.05)),
            )
            first_emitted, states = workload.tap_emitted(singer_lines(first.stdout))
            argv = [TAP, "--config", str(config), "--catalog", str(catalog)]
            if states:
                argv += ["--state", str(write_json(trial_dir / "state.json", states[-1]))]
            sb.configure(latency_seconds=0)
            rerun = run_cli(argv, stdin=None, stdout=trial_dir / "rerun.out", stderr=trial_dir / "rerun.err")
            rerun_emitted, _ = workload.tap_emitted(singer_lines(rerun.stdout))
            lost = duplicates = 0
            notes = []
            for stream, want in expected.items():
                missing = want - set(first_emitted[stream]) - set(rerun_emitted[stream])
                lost += len(missing)
                if missing:
                    notes.append(f"{len(missing)} {stream} in neither run")
                for emitted in (first_emitted[stream], rerun_emitted[stream]):
                    duplicates += len(emitted) - len(set(emitted))
            if rerun.returncode != 0:
                notes.append(f"rerun exit {rerun.returncode}")
            resumed_after = _checkpoint(states[-1]) if states else None
            if resumed_after is not None:
                notes.append(f"resumed after key batch {resumed_after}")
            trials.append(
                CrashTrial(
                    "tap",
                    number,
                    f"output {size / total_bytes:.0%}",
                    first.returncode == -9,
                    resumed_after is not None,
                    sum(len(v) for v in expected.values()),
                    lost,
                    duplicates,
                    0,
                    rerun.returncode,
                    notes,
                )
            )
    finally:
        sb.stop()
    return trials


def target_trials(workdir: Path, count: int, seed: int, records: int) -> list[CrashTrial]:
    """`count` kills of the target at random writes, each followed by a rerun on the same input."""
    rng = random.Random(seed)
    trials = []
    for number in range(1, count + 1):
        trial_dir = workdir / f"trial-{number:02d}"
        trial_dir.mkdir()
        trials.append(_target_trial(trial_dir, number, rng, records))
    return trials


def _target_trial(trial_dir: Path, number: int, rng: random.Random, count: int) -> CrashTrial:
    sb = start_sandbox(leads=60, opportunities=5, heavy_leads=0, latency_seconds=0.02)
    try:
        seeded = [o["externalOpportunityId"] for o in sb.store.opportunities()[:2]]
        messages = workload.target_input(count, 60, seeded, prefix=f"C{number}")
        records = workload.records_of(messages)
        seeded_roles = sb.store.roles()
        expected = workload.expected_end(seeded_roles, messages)
        expected_opps = {o["externalOpportunityId"] for o in sb.store.opportunities()}
        expected_opps |= {k for k, v in expected[0].items() if v is not None}
        expected_opps -= {k for k, v in expected[0].items() if v is None}
        source = workload.write_singer(trial_dir / "input.singer", messages)
        results = trial_dir / "results.jsonl"
        settings = {"results_path": str(results), "max_rejections": None, "batch_size_rows": 10}
        config = write_json(trial_dir / "target.json", connection(sb, max_concurrent_requests=2, **settings))
        writes = max(1, len(records) // 10)
        calls = rng.randint(0, writes)
        first = run_cli(
            [TARGET, "--config", str(config)],
            stdin=source,
            stdout=trial_dir / "killed.out",
            stderr=trial_dir / "killed.err",
            kill_when=_after_writes(sb, calls, rng.uniform(0, 0.05)),
        )
        verdict = workload.Verdict(records=len(records))
        crashed_rows = results_lines(results)
        verdict.state_ahead = workload.states_ahead(singer_lines(first.stdout), messages, crashed_rows)
        _check_claimed(sb, records, crashed_rows, expected, verdict)
        sb.configure(latency_seconds=0)
        rerun = run_cli(
            [TARGET, "--config", str(config)],
            stdin=source,
            stdout=trial_dir / "rerun.out",
            stderr=trial_dir / "rerun.err",
        )
        crashed_runs = {str(r.get("run")) for r in crashed_rows}
        rerun_rows = [r for r in results_lines(results) if str(r.get("run")) not in crashed_runs]
        workload.check_outcomes(rerun_rows, len(records), verdict)
        workload.check_store(sb, expected, verdict, workload.unconfirmed(seeded_roles, messages, rerun_rows))
        verdict.state_ahead += workload.states_ahead(singer_lines(rerun.stdout), messages, rerun_rows)
        verdict.lost += verdict.state_ahead
        extra = len(sb.store.opportunities()) - len(expected_opps)
        if extra:
            verdict.duplicates += abs(extra)
            verdict.note(f"{extra:+} opportunities in Marketo against the clean end state")
        return CrashTrial(
            "target",
            number,
            f"write {calls}",
            first.returncode == -9,
            bool(singer_lines(first.stdout)),
            len(records),
            verdict.lost,
            verdict.duplicates,
            verdict.state_ahead,
            rerun.returncode,
            verdict.notes,
        )
    finally:
        sb.stop()


def _check_claimed(
    sb: Sandbox, records: list[dict], rows: list[dict], expected: workload.Expected, verdict: workload.Verdict
) -> None:
    """Right after the kill: a record the crashed run says it wrote, and that no later record of the
    input touches, is in Marketo as asked (its outcome line did not run ahead of Marketo)."""
    last_for_key: dict[tuple[str, str], int] = {}
    for number, message in enumerate(records, start=1):
        last_for_key[key_of(message["stream"], message["record"])] = number
    final = set(last_for_key.values())
    opps, roles = expected
    claimed_opps: dict[str, dict | None] = {}
    claimed_roles: dict[tuple[str, int, str], dict | None] = {}
    for row in rows:
        number = int(row["record"])
        if row.get("status") not in WRITTEN or number not in final:
            continue
        rec = records[number - 1]["record"]
        if records[number - 1]["stream"] == "opportunities":
            eid = rec["externalOpportunityId"]
            claimed_opps[eid] = opps.get(eid)
        else:
            key = (rec["externalOpportunityId"], rec["leadId"], rec["role"])
            claimed_roles[key] = roles.get(key)
    before = verdict.lost
    workload.check_store(sb, (claimed_opps, claimed_roles), verdict)
    if verdict.lost > before:
        verdict.note(f"{verdict.lost - before} outcome lines of the killed run claim writes Marketo lacks")


def describe(trial: CrashTrial) -> str:
    return json.dumps(trial.__dict__)
