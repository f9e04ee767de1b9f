"""Side by side with marketorestpython: the same reads and writes, the same sandbox, data and limits.

Their side is the script a user would write with marketorestpython 0.5.25 (`bench/mrp_script.py`):
roles by `leadId`, 300 lead ids per query, then the opportunities those roles name, 300 ids per
query; for the write-back, the tap's output sent with `create_update_opportunities` and
`create_update_opportunities_roles`, 300 records per call. Our side is `tap-marketo-opps` with
`lead_id_range` and `target-marketo-opps` on the same file. Both run as their own processes,
measured from outside (`bench/measure.py`); the sandbox counts the calls. Record counts (and the
marketoGUIDs read) must be equal, or the run stops.

Two set-ups, both with Marketo's 300 ms latency and its window shrunk by the same factor k:
- **limits**: the sandbox enforces 100 calls per window and 10 concurrent; we use the full
  100 / 10 (the library assumes the full 100 per 20 s). The rate limit binds us (about
  5 calls/s at full scale) while the library's own pacing (one call per 0.2 s after the previous
  answer, one at a time) binds it (about 2 calls/s), so the speed-up is capped near 2.5x.
- **latency only**: the rate limit lifted (10 concurrent still enforced); latency and CPU bind.

    .venv/bin/python -m bench.versus            # about 3 minutes
    .venv/bin/python -m bench.versus --quick    # a smoke run, about 25 s
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench import measure
from bench.rate import (
    FULL,
    LIFTED,
    MARKETO_LATENCY,
    MARKETO_WINDOW,
    Run,
    catalog,
    connection,
    run_tap,
    run_target,
    sandbox,
    write_json,
)
from bench.rows import Row, table
from bench.sandbox_process import SandboxProcess

SCRIPT = Path(__file__).with_name("mrp_script.py")


@dataclass(frozen=True)
class Theirs:
    usage: measure.Usage
    calls: int
    records: dict[str, int]
    output: Path


def run_theirs(sb: SandboxProcess, workdir: Path, name: str, args: list[str], *, k: float) -> Theirs:
    """Runs the marketorestpython script (`read` or `write`) against a freshly reset sandbox."""
    config = write_json(workdir / f"{name}.json", {**connection(sb), "time_scale": k})
    output, summary = workdir / f"{name}.jsonl", workdir / f"{name}-summary.json"
    sb.reset()
    usage = measure.run(
        [sys.executable, str(SCRIPT), args[0], str(config), *args[1:], str(output), str(summary)],
        stderr=workdir / f"{name}.log",
    )
    if usage.exit_code != 0:
        raise SystemExit(f"the marketorestpython script exited {usage.exit_code}; see {workdir / name}.log")
    found = json.loads(summary.read_text())
    calls = int(sb.get("stats")["rest_calls"])
    return Theirs(usage, calls, found.get("records") or found["statuses"], output)


def guids(path: Path, *, singer: bool) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    with path.open() as lines:
        for line in lines:
            if singer and '"RECORD"' not in line:
                continue
            message = json.loads(line)
            found.setdefault(message["stream"], set()).add(message["record"]["marketoGUID"])
    return found


def comparison_rows(name: str, ours: Run, theirs: Theirs, records: int) -> list[Row]:
    print(
        f"  {name}: ours {ours.usage.wall:.1f} s wall, {ours.calls} calls, {ours.usage.cpu:.1f} s CPU,"
        f" {ours.usage.peak_rss_mb:.0f} MB; theirs {theirs.usage.wall:.1f} s, {theirs.calls} calls,"
        f" {theirs.usage.cpu:.1f} s CPU, {theirs.usage.peak_rss_mb:.0f} MB; {records:,} records each",
        flush=True,
    )
    return [
        Row.measured(name, "wall ours / theirs", ours.usage.wall / theirs.usage.wall, "ratio", "<= 0.333"),
        Row.measured(name, "calls ours / theirs", ours.calls / theirs.calls, "ratio", "<= 1"),
        Row.measured(name, "CPU ours / theirs", ours.usage.cpu / theirs.usage.cpu, "ratio"),
        Row.measured(
            name, "peak RSS ours / theirs", ours.usage.peak_rss_mb / theirs.usage.peak_rss_mb, "ratio"
        ),
        Row.measured(name, "wall ours", ours.usage.wall, "s"),
        Row.measured(name, "wall theirs", theirs.usage.wall, "s"),
        Row.measured(name, "records, each side (asserted equal)", records, "records"),
    ]


def compare(
    sb: SandboxProcess, workdir: Path, setup: str, *, k: float, lead_end: int, catalog_path: Path
) -> list[Row]:
    limits = FULL.config(MARKETO_WINDOW / k) if setup == "limits" else LIFTED
    label = f"versus mrp, {setup}, k={k:g}"
    ours = run_tap(
        sb, workdir, f"ours-read-{setup}", lead_end=lead_end, limits=limits, catalog_path=catalog_path
    )
    theirs = run_theirs(
        sb, workdir, f"theirs-read-{setup}", ["read", str(catalog_path), "1", str(lead_end)], k=k
    )
    if ours.records != theirs.records or guids(ours.output, singer=True) != guids(
        theirs.output, singer=False
    ):
        raise SystemExit(f"the reads differ: ours {ours.records}, theirs {theirs.records}")
    found = comparison_rows(f"{label}: read 1..{lead_end:,}", ours, theirs, sum(ours.records.values()))
    written = run_target(sb, workdir, f"ours-write-{setup}", singer=ours.output, limits=limits)
    their_writes = run_theirs(sb, workdir, f"theirs-write-{setup}", ["write", str(ours.output)], k=k)
    done = sum(n for status, n in their_writes.records.items() if status in ("created", "updated"))
    if done != sum(their_writes.records.values()) or done != sum(written.records.values()):
        raise SystemExit(f"the writes differ: ours {written.records}, theirs {their_writes.records}")
    return found + comparison_rows(f"{label}: write the read back", written, their_writes, done)


def rows(workdir: Path, *, quick: bool) -> list[Row]:
    k = 4.0
    lead_end = 5_000 if quick else 25_000
    leads = lead_end + 1000
    print(
        f"versus: window {MARKETO_WINDOW / k:g} s, latency {MARKETO_LATENCY / k * 1000:g} ms (Marketo's"
        f" scaled by 1/{k:g}); sandbox of {leads:,} leads; marketorestpython's clock scaled the same",
        flush=True,
    )
    found: list[Row] = []
    with sandbox(workdir, leads=leads, opportunities=leads // 2, k=k) as sb:
        catalog_path = catalog(sb, workdir)
        found += compare(sb, workdir, "limits", k=k, lead_end=lead_end, catalog_path=catalog_path)
        requests.post(
            f"{sb.base_url}/_sandbox/config", json={"rate_limit": None}, timeout=60
        ).raise_for_status()
        found += compare(sb, workdir, "latency only", k=k, lead_end=lead_end, catalog_path=catalog_path)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a fifth of the leads")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="marketo-versus-") as tmp:
        found = rows(Path(tmp), quick=args.quick)
    print()
    print(table(found))


def _unused(_: Any) -> None:  # pragma: no cover
    pass


if __name__ == "__main__":
    main()
