"""Rate ceiling: how much of its configured share of Marketo's rate limit each connector uses.

A `marketo-sandbox` process enforces Marketo's limits (100 calls per window, 10 concurrent) and
adds a per-call latency; window and latency are Marketo's 20 s and 300 ms shrunk by the same
factor k, and the connectors' `rate_window_seconds` shrinks with them. The sandbox notes when it
admitted each call (`/_sandbox/call-times`); the figure is the calls admitted in the run's steady
full windows (from one window after its first call) ÷ (those windows x `max_calls_per_20s`).
Goal: at least 0.90, at the defaults (50 calls, 5 concurrent) and at 100 / 10, with no 606 or 615 answer.

With the limit binding, a limiter that counts each call from its start until a window after its
answer can reach at most window ÷ (window + latency) of it (0.985 here). A connector that cannot
keep enough calls in flight falls short of that; the CPU rows show whether CPU was the cause.

    .venv/bin/python -m bench.rate            # about 2.5 minutes
    .venv/bin/python -m bench.rate --quick    # a smoke run at the defaults only, about 30 s
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import math
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import measure
from bench.rows import Row, table
from bench.sandbox_process import BIN, CLIENT_ID, CLIENT_SECRET, SandboxProcess

MARKETO_WINDOW, MARKETO_LATENCY = 20.0, 0.3
FIELD_STREAMS = ("opportunity_fields", "opportunity_role_fields")
RECORD_STREAMS = {"opportunities", "opportunity_roles"}
# Roughly what this data set (half as many opportunities as leads, 3 roles each) costs per 1,000
# leads: it only sizes the runs, whose real call counts are measured.
TAP_CALLS_PER_1000_LEADS = 10.4


@dataclass(frozen=True)
class Limits:
    """A connector's share of the limits: calls per (scaled) window and calls in flight."""

    calls: int
    concurrent: int

    @property
    def label(self) -> str:
        return f"{self.calls}/20s, {self.concurrent} concurrent"

    def config(self, window: float) -> dict[str, Any]:
        return {
            "max_calls_per_20s": self.calls,
            "max_concurrent_requests": self.concurrent,
            "rate_window_seconds": window,
        }


DEFAULTS, FULL = Limits(50, 5), Limits(100, 10)
# The connectors' limiter stays on with a window so short that it never binds.
LIFTED = {"max_calls_per_20s": 100, "max_concurrent_requests": 10, "rate_window_seconds": 0.001}


class ScaledSandbox(SandboxProcess):
    """The sandbox enforcing Marketo's limits on a clock k times faster, with its latency."""

    def __init__(
        self, workdir: Path, *, leads: int, opportunities: int, k: float, rate_limit: bool = True
    ) -> None:
        self.window, self.latency = MARKETO_WINDOW / k, MARKETO_LATENCY / k
        super().__init__(
            workdir,
            leads=leads,
            opportunities=opportunities,
            options=(
                *("--rate-limit", "100" if rate_limit else "off", "--rate-window", str(self.window)),
                *("--concurrency-limit", "10", "--latency", str(self.latency)),
            ),
        )


@contextlib.contextmanager
def sandbox(workdir: Path, **options: Any) -> Iterator[SandboxProcess]:
    process = ScaledSandbox(workdir, **options)
    try:
        yield process
    finally:
        process.stop()


@dataclass(frozen=True)
class Run:
    """One measured connector run and what the sandbox saw of it."""

    usage: measure.Usage
    sandbox_cpu: float
    calls: int
    errors: dict[str, int]
    admitted: list[float]
    records: dict[str, int]
    output: Path

    @property
    def limit_errors(self) -> int:
        return sum(self.errors.get(code, 0) for code in ("606", "615"))


def connection(sb: SandboxProcess) -> dict[str, Any]:
    return {"base_url": sb.base_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def catalog(sb: SandboxProcess, workdir: Path) -> Path:
    """The discovered catalog with the two field-metadata streams deselected: records only."""
    config = write_json(workdir / "discover.json", {**connection(sb), **LIFTED})
    found = subprocess.run(
        [str(BIN / "tap-marketo-opps"), "--config", str(config), "--discover"],
        capture_output=True,
        check=True,
    )
    document = json.loads(found.stdout)
    for stream in document["streams"]:
        if stream["tap_stream_id"] in FIELD_STREAMS:
            for entry in stream["metadata"]:
                if entry["breadcrumb"] == []:
                    entry["metadata"]["selected"] = False
    return write_json(workdir / "catalog.json", document)


def measured(sb: SandboxProcess, argv: list[str], *, stdin: Path | None, stdout: Path, stderr: Path) -> Run:
    """Runs one command against a freshly reset sandbox; fails on a non-zero exit."""
    sb.reset()
    cpu_before = sb.cpu_seconds()
    usage = measure.run(argv, stdin=stdin, stdout=stdout, stderr=stderr)
    if usage.exit_code != 0:
        raise SystemExit(f"{argv[0]} exited {usage.exit_code}; see {stderr}")
    sandbox_cpu = sb.cpu_seconds() - cpu_before
    stats = sb.get("stats")
    admitted = sb.get("call-times")["admitted"]
    return Run(usage, sandbox_cpu, int(stats["rest_calls"]), stats["errors_by_code"], admitted, {}, stdout)


def run_tap(
    sb: SandboxProcess, workdir: Path, name: str, *, lead_end: int, limits: dict[str, Any], catalog_path: Path
) -> Run:
    config = write_json(
        workdir / f"{name}.json",
        {**connection(sb), **limits, "lead_id_range": {"start": 1, "end": lead_end}},
    )
    run = measured(
        sb,
        [str(BIN / "tap-marketo-opps"), "--config", str(config), "--catalog", str(catalog_path)],
        stdin=None,
        stdout=workdir / f"{name}.singer",
        stderr=workdir / f"{name}.log",
    )
    counts = dict.fromkeys(sorted(RECORD_STREAMS), 0)
    with run.output.open() as lines:
        for line in lines:
            if '"RECORD"' in line:
                counts[json.loads(line)["stream"]] += 1
    return Run(**{**run.__dict__, "records": counts})


def run_target(sb: SandboxProcess, workdir: Path, name: str, *, singer: Path, limits: dict[str, Any]) -> Run:
    results = workdir / f"{name}-results.jsonl"
    config = write_json(
        workdir / f"{name}.json",
        {**connection(sb), **limits, "results_path": str(results)},
    )
    run = measured(
        sb,
        [str(BIN / "target-marketo-opps"), "--config", str(config)],
        stdin=singer,
        stdout=workdir / f"{name}-state.singer",
        stderr=workdir / f"{name}.log",
    )
    counts: dict[str, int] = {}
    with results.open() as lines:
        for line in lines:
            outcome = json.loads(line)
            if outcome["status"] not in ("created", "updated"):
                raise SystemExit(f"{name}: a record was not written ({outcome}); see {results}")
            counts[outcome["stream"]] = counts.get(outcome["stream"], 0) + 1
    return Run(**{**run.__dict__, "records": counts})


@dataclass(frozen=True)
class Achieved:
    ratio: float
    full_windows: int
    peak: int
    sliding: float  # the mean over every window start in the steady part, ÷ limit


def achieved(admitted: list[float], *, window: float, limit: int) -> Achieved:
    """Calls admitted in the steady part of a run ÷ (its full windows x limit), and the most calls
    any sliding window held (what Marketo would hold against the limit).

    The steady part starts one window after the first call, since any limiter lets a full window's
    calls out at once at the start, and ends with the last full window before the last call.
    """
    times = sorted(admitted)
    if not times:
        return Achieved(0.0, 0, 0, 0.0)
    start = times[0] + window
    windows = max(0, math.floor((times[-1] - start) / window))
    inside = bisect.bisect_left(times, start + windows * window) - bisect.bisect_left(times, start)
    peak = max(bisect.bisect_left(times, t + window) - i for i, t in enumerate(times))
    if not windows:
        return Achieved(0.0, 0, peak, 0.0)
    steps = 200 * (windows - 1) + 1  # window starts from `start` to the last full window's
    counts = [
        bisect.bisect_left(times, s + window) - bisect.bisect_left(times, s)
        for s in (start + (windows - 1) * window * i / max(steps - 1, 1) for i in range(steps))
    ]
    return Achieved(inside / (windows * limit), windows, peak, sum(counts) / len(counts) / limit)


def rate_rows(name: str, run: Run, *, window: float, limit: int) -> list[Row]:
    found = achieved(run.admitted, window=window, limit=limit)
    wall = run.usage.wall
    print(
        f"  {name}: {found.ratio:.3f} of {limit} per window over {found.full_windows} full windows"
        f" (sliding mean {found.sliding:.3f})"
        f" ({run.calls} calls, peak {found.peak} in a window, 606/615: {run.limit_errors});"
        f" wall {wall:.1f} s, CPU {run.usage.cpu:.1f} s, sandbox CPU {run.sandbox_cpu:.1f} s",
        flush=True,
    )
    return [
        Row.measured(name, "achieved calls per window / max_calls_per_20s", found.ratio, "ratio", ">= 0.90"),
        Row.measured(name, "sliding-window mean calls / max_calls_per_20s", found.sliding, "ratio"),
        Row.measured(name, "606 + 615 answers", run.limit_errors, "answers", "== 0"),
        Row.measured(name, "steady full windows measured", found.full_windows, "windows", ">= 2"),
        Row.measured(name, "connector CPU / wall", run.usage.cpu / wall, "cores"),
        Row.measured(name, "sandbox CPU / wall", run.sandbox_cpu / wall, "cores"),
    ]


def rows(workdir: Path, *, quick: bool) -> list[Row]:
    k = 5.0 if quick else 3.0
    windows = 3.3 if quick else 4.6  # windows of calls each tap run makes; the target's are fewer
    shares = (DEFAULTS,) if quick else (DEFAULTS, FULL)
    tap_leads = {lim: int(windows * lim.calls / TAP_CALLS_PER_1000_LEADS * 1000) for lim in shares}
    leads = max(tap_leads.values()) + 1000
    window = MARKETO_WINDOW / k
    print(
        f"rate: window {window:g} s, latency {MARKETO_LATENCY / k * 1000:g} ms (Marketo's scaled by 1/{k:g});"
        f" sandbox of {leads:,} leads enforcing 100 calls per window, 10 concurrent",
        flush=True,
    )
    found: list[Row] = []
    with sandbox(workdir, leads=leads, opportunities=leads // 2, k=k) as sb:
        catalog_path = catalog(sb, workdir)
        for lim in shares:
            tag = f"{lim.calls}-{lim.concurrent}"
            tap = run_tap(
                sb,
                workdir,
                f"rate-tap-{tag}",
                lead_end=tap_leads[lim],
                limits=lim.config(window),
                catalog_path=catalog_path,
            )
            label = f"rate: tap at {lim.label}, k={k:g}"
            found += rate_rows(label, tap, window=window, limit=lim.calls)
            target = run_target(
                sb, workdir, f"rate-target-{tag}", singer=tap.output, limits=lim.config(window)
            )
            if target.records != tap.records:
                raise SystemExit(f"target wrote {target.records}, the tap read {tap.records}")
            label = f"rate: target at {lim.label}, k={k:g}"
            found += rate_rows(label, target, window=window, limit=lim.calls)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer windows on a faster clock")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="marketo-rate-") as tmp:
        found = rows(Path(tmp), quick=args.quick)
    print()
    print(table(found))


if __name__ == "__main__":
    main()
