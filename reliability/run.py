"""`python -m reliability.run [--size small|full] [--out RELIABILITY.md]`: run every trial, write the report.

Faults by class, SIGKILL crashes of tap and target, the bad-input corpus and a secret scan of
all output, against in-process sandboxes (real HTTP, real command lines, both at DEBUG).
`--size small` (run by `make test`, well under a minute of work) runs fewer fault classes and
crash trials on smaller inputs; `--size full` (`make reliability`, a few minutes) runs them all,
with at least 20 crash trials per connector. Exits 1 when anything was lost or leaked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import corpus, crashes, faults, leaks, report

ROOT = Path(__file__).resolve().parent.parent
SMALL_FAULTS = ("606", "5xx HTML", "drop", "drop after apply", "delayed apply", "token revocation")


@dataclass(frozen=True)
class Size:
    fault_names: tuple[str, ...] | None  # None: every class
    target_opportunities: int
    tap_leads: int
    tap_crashes: int
    target_crashes: int
    crash_leads: int
    crash_opportunities: int


SIZES = {
    "small": Size(SMALL_FAULTS, 20, 600, 3, 3, 900, 40),
    "full": Size(None, 120, 3000, 20, 20, 3000, 100),
}


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"`{commit}`" + (" with uncommitted changes" if dirty else "")


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average at start {load}"
    )


def run_all(size_name: str, workdir: Path, workers: int, seed: int) -> tuple[Any, ...]:
    size = SIZES[size_name]
    classes = [
        c for c in faults.fault_classes(size_name) if size.fault_names is None or c.name in size.fault_names
    ]
    report._DESCRIPTIONS.update({c.name: c.description for c in classes})
    entries = corpus.load_index()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs: list[tuple[str, Future[Any]]] = []

        def submit(kind: str, name: str, fn: Any) -> None:
            directory = workdir / kind / name.replace(" ", "_").replace("/", "_")
            directory.mkdir(parents=True)
            jobs.append((kind, pool.submit(fn, directory)))

        # The longest jobs first, so the pool ends together.
        for c in sorted(classes, key=lambda c: -c.settle_seconds):
            submit(
                "faults",
                f"{c.name}-target",
                lambda d, c=c: faults.target_trial(c, d, size.target_opportunities),
            )
            if not c.targets_only:
                submit("faults", f"{c.name}-tap", lambda d, c=c: faults.tap_trial(c, d, size.tap_leads))
        halves = [(size.tap_crashes + 1) // 2, size.tap_crashes // 2]
        for part, count in enumerate(halves):
            if count:
                submit(
                    "crash",
                    f"tap-{part}",
                    lambda d, n=count, p=part: _renumber(
                        crashes.tap_trials(d, n, seed + p, size.crash_leads), p * halves[0]
                    ),
                )
        chunk = 5
        for start in range(0, size.target_crashes, chunk):
            count = min(chunk, size.target_crashes - start)
            submit(
                "crash",
                f"target-{start}",
                lambda d, n=count, s=start: _renumber(
                    crashes.target_trials(d, n, seed + 100 + s, size.crash_opportunities), s
                ),
            )
        for entry in entries:
            submit("corpus", entry["file"], lambda d, e=entry: corpus.run_item(e, d))
        fault_trials: list[faults.Trial] = []
        crash_trials: list[crashes.CrashTrial] = []
        items: list[corpus.ItemOutcome] = []
        for kind, job in jobs:
            value = job.result()
            if kind == "faults":
                fault_trials.append(value)
            elif kind == "crash":
                crash_trials.extend(value)
            else:
                items.append(value)
    crash_trials.sort(key=lambda t: (t.connector, t.number))
    return fault_trials, crash_trials, items, leaks.scan(workdir)


def _renumber(trials: list[crashes.CrashTrial], offset: int) -> list[crashes.CrashTrial]:
    for trial in trials:
        trial.number += offset
    return trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", default=str(ROOT / "RELIABILITY.md"), help="the report (Markdown)")
    parser.add_argument("--json", help="also write the summary figures here")
    parser.add_argument("--keep", help="keep every run's files in this directory")
    parser.add_argument("--workers", type=int, default=6, help="trials at once (most of a trial is waiting)")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    started_wall = dt.datetime.now(dt.timezone.utc)
    started = time.monotonic()
    info_machine = machine()
    with tempfile.TemporaryDirectory(prefix="marketo-reliability-") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        fault_trials, crash_trials, items, scan = run_all(args.size, workdir, args.workers, args.seed)
    notes = []
    if not faults.timeouts_configurable():
        notes.append(
            "No setting lowers the client's timeouts (marketo_api: query 30 s, write 60 s), so \"slow "
            'beyond timeout" waits out the real timeout on one call of each connector, at full size only.'
        )
    command = f"python -m reliability.run --size {args.size}"
    info = report.RunInfo(
        command=command,
        size=args.size,
        started=started_wall.strftime("%Y-%m-%d %H:%M"),
        commit=git_commit(),
        machine=info_machine,
        seconds=time.monotonic() - started,
        notes=notes,
    )
    Path(args.out).write_text(report.render(info, fault_trials, crash_trials, items, scan), encoding="utf-8")
    figures = report.summary(fault_trials, crash_trials, items, scan)
    figures["seconds"] = round(info.seconds, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    print(
        f"reliability ({args.size}, {info.seconds:.0f} s): "
        f"lost {figures['lost']}, leaked {figures['leaked']}; "
        f"corpus {len(items) - len(figures['corpus_failing'])}/{len(items)} passing; report in {args.out}"
    )
    return 1 if figures["lost"] or figures["leaked"] else 0


if __name__ == "__main__":
    sys.exit(main())
