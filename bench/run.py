"""`make bench`: the tap and the target at scale against a local sandbox, with figures.

Every run is the real command line (`tap-marketo-opps`, `target-marketo-opps`) against a
`marketo-sandbox` process, measured from outside: wall time, CPU time and peak resident memory
of the connector's process (`os.wait4`), Marketo calls (the sandbox's own count) and records.

Marketo's rate limit is lifted on both sides, so the figures show the connectors' own cost. The
last column projects the run onto a real instance at the default share of 50 calls per 20 s,
where the calls, not the CPU, set the time: that is why the call count is the figure to watch.

    .venv/bin/python -m bench.run            # the full set, about 3 minutes on 2 cores
    .venv/bin/python -m bench.run --quick    # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench import validation

BIN = Path(sys.executable).parent
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
DEFAULT_CALLS_PER_20S = 50
# The connectors' limiter stays on, with a window so short that it never binds.
UNLIMITED = {"max_calls_per_20s": 100, "max_concurrent_requests": 10, "rate_window_seconds": 0.02}
DROP_FIELD_STREAMS = {"opportunity_fields": "__NULL__", "opportunity_role_fields": "__NULL__"}


@dataclass
class Measured:
    label: str
    wall: float
    cpu: float
    peak_rss_mb: float
    calls: int
    records: int

    def row(self) -> str:
        projected = self.calls * 20 / DEFAULT_CALLS_PER_20S
        return (
            f"{self.label:<44} {self.records:>9,} {self.calls:>7,} {self.records / max(self.calls, 1):>8.0f}"
            f" {self.wall:>7.1f} {self.cpu:>7.1f} {self.records / max(self.cpu, 1e-9):>9,.0f}"
            f" {self.peak_rss_mb:>7.0f} {_duration(projected):>10}"
        )


HEADER = (
    f"{'run':<44} {'records':>9} {'calls':>7} {'rec/call':>8} {'wall s':>7} {'cpu s':>7} {'rec/cpu s':>9}"
    f" {'RSS MB':>7} {'at 50/20s':>10}"
)


class SandboxProcess:
    """A `marketo-sandbox` process on a free port, with its limits off."""

    def __init__(self, workdir: Path, *, leads: int, opportunities: int) -> None:
        port_file = workdir / f"port-{leads}"
        self._process = subprocess.Popen(
            [
                *(str(BIN / "marketo-sandbox"), "--port", "0", "--port-file", str(port_file)),
                *("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET),
                *("--leads", str(leads), "--opportunities", str(opportunities)),
                *("--rate-limit", "off", "--concurrency-limit", "off", "--daily-quota", "off"),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("the sandbox did not start")
            time.sleep(0.2)
        self.base_url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def rest_calls(self) -> int:
        stats = requests.get(f"{self.base_url}/_sandbox/stats", timeout=30).json()
        return int(stats["rest_calls"])

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()


@contextlib.contextmanager
def sandbox(workdir: Path, *, leads: int, opportunities: int) -> Iterator[SandboxProcess]:
    process = SandboxProcess(workdir, leads=leads, opportunities=opportunities)
    try:
        yield process
    finally:
        process.stop()


def run_measured(
    argv: list[str], *, stdin: Path | None, stdout: Path, stderr: Path
) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one command; fails on a non-zero exit."""
    with contextlib.ExitStack() as files:
        given = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        out = files.enter_context(stdout.open("wb"))
        err = files.enter_context(stderr.open("wb"))
        started = time.monotonic()
        process = subprocess.Popen(argv, stdin=given, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {process.returncode}; see {stderr}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def count_records(path: Path, streams: set[str]) -> int:
    with path.open() as lines:
        return sum(1 for line in lines if '"RECORD"' in line and json.loads(line).get("stream") in streams)


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def bench_tap(sb: SandboxProcess, workdir: Path, label: str, keys: dict[str, Any]) -> tuple[Measured, Path]:
    config = write_json(
        workdir / "tap.json",
        {
            "base_url": sb.base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **UNLIMITED,
            **keys,
        },
    )
    catalog = workdir / "catalog.json"
    subprocess.run(
        [str(BIN / "tap-marketo-opps"), "--config", str(config), "--discover"],
        stdout=catalog.open("wb"),
        stderr=subprocess.DEVNULL,
        check=True,
    )
    output = workdir / f"tap-{len(list(workdir.glob('tap-*.singer'))) + 1}.singer"
    before = sb.rest_calls()
    wall, cpu, rss = run_measured(
        [str(BIN / "tap-marketo-opps"), "--config", str(config), "--catalog", str(catalog)],
        stdin=None,
        stdout=output,
        stderr=workdir / "tap.log",
    )
    records = count_records(output, {"opportunities", "opportunity_roles"})
    return Measured(f"tap: {label}", wall, cpu, rss, sb.rest_calls() - before, records), output


def bench_target(sb: SandboxProcess, workdir: Path, label: str, singer_file: Path) -> Measured:
    config = write_json(
        workdir / "target.json",
        {
            "base_url": sb.base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **UNLIMITED,
            "results_path": str(workdir / "results.jsonl"),
            "stream_maps": DROP_FIELD_STREAMS,
        },
    )
    (workdir / "results.jsonl").unlink(missing_ok=True)
    before = sb.rest_calls()
    wall, cpu, rss = run_measured(
        [str(BIN / "target-marketo-opps"), "--config", str(config)],
        stdin=singer_file,
        stdout=workdir / "target-state.singer",
        stderr=workdir / "target.log",
    )
    with (workdir / "results.jsonl").open() as lines:
        outcomes = [json.loads(line)["status"] for line in lines]
    written = sum(1 for status in outcomes if status in ("created", "updated"))
    if written != len(outcomes):
        raise SystemExit(f"target: {len(outcomes) - written} records were not written; see {workdir}")
    return Measured(f"target: {label}", wall, cpu, rss, sb.rest_calls() - before, len(outcomes))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="sizes a tenth of the full set")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    leads, opportunities = 100_000 // scale, 50_000 // scale
    small_range, file_keys = 10_000 // scale, 1_000_000 // scale

    with tempfile.TemporaryDirectory(prefix="marketo-bench-") as tmp:
        workdir = Path(tmp)
        print(f"sandbox: {leads:,} leads, {opportunities:,} opportunities, about 3 roles each", flush=True)
        rows: list[Measured] = []
        with sandbox(workdir, leads=leads, opportunities=opportunities) as sb:
            small, small_output = bench_tap(
                sb,
                workdir,
                f"lead_id_range 1..{small_range:,}",
                {"lead_id_range": {"start": 1, "end": small_range}},
            )
            rows.append(small)
            large, large_output = bench_tap(
                sb, workdir, f"lead_id_range 1..{leads:,}", {"lead_id_range": {"start": 1, "end": leads}}
            )
            rows.append(large)
            key_file = workdir / "lead_ids.txt"
            with key_file.open("w") as keys:
                keys.writelines(f"{i}\n" for i in range(1, file_keys + 1))
            ids_run, _ = bench_tap(
                sb, workdir, f"lead_ids_file of {file_keys:,} ids", {"lead_ids_file": str(key_file)}
            )
            rows.append(ids_run)
            rows.append(
                bench_target(sb, workdir, f"the tap's output of 1..{small_range:,} back", small_output)
            )
            rows.append(bench_target(sb, workdir, f"the tap's output of 1..{leads:,} back", large_output))
        print()
        print(HEADER)
        for row in rows:
            print(row.row())
        print(
            "\nrec/call: records per Marketo call; rec/cpu s: records per CPU second of the connector;"
            "\nat 50/20s: the same calls at the default share of Marketo's limit"
            f" ({DEFAULT_CALLS_PER_20S} calls per 20 s). Peak memory should not grow with keys or records."
        )
    print("\nRecord validation in the target (per record):")
    validation.main(2_000 if args.quick else 20_000)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


if __name__ == "__main__":
    main()
