"""`make bench`: the tap and the target at scale against a local sandbox, as rows with goals.

Every connector run is the real command line (`tap-marketo-opps`, `target-marketo-opps`, or the bare
singer-sdk pair of `bench.bare`) against one `marketo-sandbox` process with Marketo's limits lifted,
measured from outside by `bench.measure` (CPU seconds, wall, peak RSS of that process alone) and by
the sandbox's own call counts. Each run is made once and shared by the sections that use it, so
ratios (ours ÷ bare, memory growth) come from the same run, side by side.

The result is one row per figure (`bench.rows`): printed as a table with the machine line and,
for a full run, written to `bench/results/latest.json`.

    .venv/bin/python -m bench.run                   # everything (about 10 minutes on 2 cores)
    .venv/bin/python -m bench.run --quick           # a tenth of the sizes (under 2 minutes)
    .venv/bin/python -m bench.run --only tap,bare   # some sections
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import measure, validation
from bench.rows import Row, machine, table, write
from bench.sandbox_process import BIN, CLIENT_ID, CLIENT_SECRET, NO_LIMITS, SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
LATEST = ROOT / "bench" / "results" / "latest.json"
DEFAULT_CALLS_PER_20S = 50
# The connectors' limiter stays on, with a window so short that it never binds.
UNLIMITED = {"max_calls_per_20s": 100, "max_concurrent_requests": 10, "rate_window_seconds": 0.02}
DROP_FIELD_STREAMS = {"opportunity_fields": "__NULL__", "opportunity_role_fields": "__NULL__"}
# `python -m bench.bare` from any directory.
BARE_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}
RECORD_STREAMS = {"opportunities", "opportunity_roles"}
SECTIONS = ("tap", "target", "memory", "bare", "ledger", "rate", "versus", "validation")
# Sections that other modules provide: `rows(workdir, *, quick) -> list[Row]`.
EXTERNAL_SECTIONS = {"rate": "bench.rate", "versus": "bench.versus"}

TAP_GOAL = ">= 50000"  # records per CPU-second, the large run
TARGET_GOAL = ">= 30000"
MEMORY_GOAL = "<= 10"  # peak RSS growth from the smallest run to the largest, %
LEDGER_GOAL = "== 0"  # write calls when the same input is written again


@dataclass(frozen=True)
class Size:
    """One tap run: a lead id range and the label its rows carry (about that many records)."""

    label: str
    lead_end: int


@dataclass(frozen=True)
class Sizes:
    leads: int
    opportunities: int
    smallest: Size  # the low point of the memory rows
    small: Size  # context for the CPU rows, and the ledger's input
    large: Size  # the CPU goals and the high point of the memory rows
    file_keys: int
    validation_records: int


# With the sandbox's data shape (2 leads per opportunity, about 3 roles per opportunity, one heavy
# lead with 350 roles) lead 1..n yields roughly 2n records, a few hundred more at the low end.
FULL = Sizes(
    leads=100_000,
    opportunities=50_000,
    smallest=Size("10k", 3_500),
    small=Size("30k", 10_000),
    large=Size("200k", 100_000),
    file_keys=1_000_000,
    validation_records=20_000,
)
QUICK = Sizes(
    leads=10_000,
    opportunities=5_000,
    smallest=Size("1k", 350),
    small=Size("3k", 1_000),
    large=Size("20k", 10_000),
    file_keys=100_000,
    validation_records=2_000,
)


@dataclass
class Run:
    """One connector run: what it moved, what it asked of Marketo, and what it cost."""

    records: int
    calls: int
    usage: measure.Usage  # the repeat with the least CPU
    cpu_seen: list[float] = field(default_factory=list)
    output: Path | None = None
    write_calls: int = 0  # sync and delete calls (the target's)

    @property
    def per_cpu_second(self) -> float:
        return self.records / max(self.usage.cpu, 1e-9)

    def rows(self, name: str, *, goal: str | None = None) -> list[Row]:
        return [
            Row.measured(name, "records", self.records, "records"),
            Row.measured(name, "calls", self.calls, "calls"),
            Row.measured(name, "records per call", self.records / max(self.calls, 1), "records"),
            Row.measured(name, "records per CPU-second", self.per_cpu_second, "records/s", goal),
            Row.measured(name, "wall", self.usage.wall, "s"),
            Row.measured(name, "calls at 50 per 20 s", self.calls * 20 / DEFAULT_CALLS_PER_20S, "s"),
        ]


def rest_calls(by_endpoint: dict[str, int]) -> int:
    """Marketo REST calls (the quota's unit): every endpoint but Identity."""
    return sum(count for key, count in by_endpoint.items() if " /rest/" in key)


def write_calls(by_endpoint: dict[str, int]) -> int:
    """Sync and delete calls: the REST POSTs (queries sent as POST are counted as `QUERY`)."""
    return sum(count for key, count in by_endpoint.items() if key.startswith("POST /rest/"))


def difference(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: count - before.get(key, 0) for key, count in after.items() if count != before.get(key, 0)}


def growth_percent(low: float, high: float) -> float:
    return (high - low) / low * 100


def count_records(path: Path, streams: set[str] = RECORD_STREAMS) -> int:
    with path.open() as lines:
        return sum(1 for line in lines if '"RECORD"' in line and json.loads(line).get("stream") in streams)


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def measured(
    argv: list[str], *, stdin: Path | None, stdout: Path, log: Path, env: dict[str, str] | None = None
) -> measure.Usage:
    usage = measure.run(argv, stdin=stdin, stdout=stdout, stderr=log, env=env)
    if usage.exit_code != 0:
        raise SystemExit(f"{argv[0]} exited {usage.exit_code}; see {log}")
    return usage


def least_cpu(times: int, once: Callable[[], measure.Usage]) -> tuple[measure.Usage, list[float]]:
    """The repeat with the least CPU (the one least disturbed by other work) and every CPU figure."""
    seen = [once() for _ in range(times)]
    return min(seen, key=lambda usage: usage.cpu), [usage.cpu for usage in seen]


class Bench:
    """The sandbox and the connector runs, each made the first time a section asks for it."""

    def __init__(self, workdir: Path, sizes: Sizes, *, repeat: int) -> None:
        self.workdir = workdir
        self.sizes = sizes
        self.repeat = repeat
        self.notes: list[str] = []
        self._sandbox: SandboxProcess | None = None
        self._taps: dict[str, Run] = {}
        self._targets: dict[str, Run] = {}
        self._bare: dict[str, Run] = {}

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox.stop()

    @property
    def sandbox(self) -> SandboxProcess:
        if self._sandbox is None:
            print(
                f"sandbox: {self.sizes.leads:,} leads, {self.sizes.opportunities:,} opportunities,"
                " about 3 roles each",
                flush=True,
            )
            self._sandbox = SandboxProcess(
                self.workdir,
                leads=self.sizes.leads,
                opportunities=self.sizes.opportunities,
                options=NO_LIMITS,
            )
        return self._sandbox

    def _connection(self) -> dict[str, Any]:
        return {
            "base_url": self.sandbox.base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **UNLIMITED,
        }

    def _tap_run(self, name: str, keys: dict[str, Any]) -> Run:
        config = write_json(self.workdir / f"tap-{name}.json", {**self._connection(), **keys})
        catalog = self.workdir / "catalog.json"
        with catalog.open("wb") as out:
            subprocess.run(
                [str(BIN / "tap-marketo-opps"), "--config", str(config), "--discover"],
                stdout=out,
                stderr=subprocess.DEVNULL,
                check=True,
            )
        output = self.workdir / f"tap-{name}.singer"
        argv = [str(BIN / "tap-marketo-opps"), "--config", str(config), "--catalog", str(catalog)]
        log = self.workdir / f"tap-{name}.log"
        before = self.sandbox.calls_by_endpoint()
        usage, cpu_seen = least_cpu(self.repeat, lambda: measured(argv, stdin=None, stdout=output, log=log))
        calls = rest_calls(difference(self.sandbox.calls_by_endpoint(), before)) // self.repeat
        print(f"  tap {name}: {usage.cpu:.1f} CPU s", flush=True)
        return Run(count_records(output), calls, usage, cpu_seen, output)

    def tap(self, size: Size) -> Run:
        """The tap over lead ids 1..`size.lead_end`."""
        if size.label not in self._taps:
            self._taps[size.label] = self._tap_run(
                size.label, {"lead_id_range": {"start": 1, "end": size.lead_end}}
            )
        return self._taps[size.label]

    def tap_keys_file(self) -> Run:
        """The tap over a file of ids 1..`file_keys`, most of which match nothing."""
        if "keys file" not in self._taps:
            key_file = self.workdir / "lead_ids.txt"
            with key_file.open("w") as keys:
                keys.writelines(f"{i}\n" for i in range(1, self.sizes.file_keys + 1))
            self._taps["keys file"] = self._tap_run("keys-file", {"lead_ids_file": str(key_file)})
        return self._taps["keys file"]

    def _target_once(self, name: str, singer_file: Path, extra: dict[str, Any]) -> tuple[Run, list[str]]:
        results = self.workdir / f"results-{name}.jsonl"
        config = write_json(
            self.workdir / f"target-{name}.json",
            {
                **self._connection(),
                "results_path": str(results),
                "stream_maps": DROP_FIELD_STREAMS,
                **extra,
            },
        )
        results.unlink(missing_ok=True)
        before = self.sandbox.calls_by_endpoint()
        usage = measured(
            [str(BIN / "target-marketo-opps"), "--config", str(config)],
            stdin=singer_file,
            stdout=self.workdir / f"target-{name}.state",
            log=self.workdir / f"target-{name}.log",
        )
        calls = difference(self.sandbox.calls_by_endpoint(), before)
        with results.open() as lines:
            statuses = [json.loads(line)["status"] for line in lines]
        run = Run(len(statuses), rest_calls(calls), usage, [usage.cpu], write_calls=write_calls(calls))
        return run, statuses

    def target(self, size: Size) -> Run:
        """The target writing the tap's output of `size` back (every record must be written)."""
        if size.label not in self._targets:
            singer_file = self.tap(size).output
            assert singer_file is not None
            seen: list[Run] = []
            for _ in range(self.repeat):
                run, statuses = self._target_once(size.label, singer_file, {})
                unwritten = sum(1 for status in statuses if status not in ("created", "updated"))
                if unwritten:
                    raise SystemExit(f"target {size.label}: {unwritten} records were not written")
                seen.append(run)
            best = min(seen, key=lambda run: run.usage.cpu)
            best.cpu_seen = [run.usage.cpu for run in seen]
            print(f"  target {size.label}: {best.usage.cpu:.1f} CPU s", flush=True)
            self._targets[size.label] = best
        return self._targets[size.label]

    def ledger(self, size: Size) -> tuple[Run, Run, list[str]]:
        """The same input written twice with a write ledger: the second run should not write."""
        singer_file = self.tap(size).output
        assert singer_file is not None
        ledger_path = self.workdir / "write-ledger"
        extra = {"write_ledger_path": str(ledger_path)}
        first, _ = self._target_once("ledger-1", singer_file, extra)
        second, statuses = self._target_once("ledger-2", singer_file, extra)
        print(f"  ledger: {first.usage.cpu:.1f} then {second.usage.cpu:.1f} CPU s", flush=True)
        return first, second, statuses

    def bare(self, kind: str, size: Size) -> Run:
        """The bare singer-sdk tap (replaying the real tap's output) or target (fed that output)."""
        key = f"{kind} {size.label}"
        if key not in self._bare:
            source = self.tap(size).output
            assert source is not None
            bare_cli = [sys.executable, "-m", "bench.bare", kind]
            output = self.workdir / f"bare-{kind}-{size.label}.singer"
            log = self.workdir / f"bare-{kind}.log"
            if kind == "tap":
                config = write_json(self.workdir / "bare-tap.json", {"input_path": str(source)})
                argv, stdin = [*bare_cli, "--config", str(config)], None
            else:
                argv, stdin = bare_cli, source
            usage, cpu_seen = least_cpu(
                self.repeat, lambda: measured(argv, stdin=stdin, stdout=output, log=log, env=BARE_ENV)
            )
            records = count_records(output if kind == "tap" else source)
            print(f"  bare {key}: {usage.cpu:.1f} CPU s", flush=True)
            self._bare[key] = Run(records, 0, usage, cpu_seen, output)
        return self._bare[key]


# ----------------------------------------------------------------------------------------- sections


def tap_rows(bench: Bench) -> list[Row]:
    sizes = bench.sizes
    small, large, keys = bench.tap(sizes.small), bench.tap(sizes.large), bench.tap_keys_file()
    keys_name = f"tap keys file {sizes.file_keys:,} ids"
    return [
        *small.rows(f"tap {sizes.small.label}"),
        *large.rows(f"tap {sizes.large.label}", goal=TAP_GOAL),
        Row.measured(keys_name, "records", keys.records, "records"),
        Row.measured(keys_name, "calls per record", keys.calls / max(keys.records, 1), "calls"),
        Row.measured(keys_name, "records per CPU-second", keys.per_cpu_second, "records/s"),
        Row.measured(keys_name, "calls at 50 per 20 s", keys.calls * 20 / DEFAULT_CALLS_PER_20S, "s"),
    ]


def target_rows(bench: Bench) -> list[Row]:
    sizes = bench.sizes
    return [
        *bench.target(sizes.small).rows(f"target {sizes.small.label}"),
        *bench.target(sizes.large).rows(f"target {sizes.large.label}", goal=TARGET_GOAL),
    ]


def memory_rows(bench: Bench) -> list[Row]:
    sizes = bench.sizes
    rows: list[Row] = []
    for kind, run_of in (("tap", bench.tap), ("target", bench.target)):
        low, high = run_of(sizes.smallest), run_of(sizes.large)
        rows += [
            Row.measured(f"{kind} {sizes.smallest.label}", "peak RSS", low.usage.peak_rss_mb, "MB"),
            Row.measured(f"{kind} {sizes.large.label}", "peak RSS", high.usage.peak_rss_mb, "MB"),
            Row.measured(
                f"{kind} {sizes.smallest.label} to {sizes.large.label}",
                "peak RSS growth",
                growth_percent(low.usage.peak_rss_mb, high.usage.peak_rss_mb),
                "%",
                MEMORY_GOAL,
            ),
        ]
    return rows


def bare_rows(bench: Bench) -> list[Row]:
    size = bench.sizes.large
    rows: list[Row] = []
    for kind, ours_of in (("tap", bench.tap), ("target", bench.target)):
        ours, bare = ours_of(size), bench.bare(kind, size)
        if bare.records != ours.records:
            raise SystemExit(f"bare {kind}: {bare.records} records, ours {ours.records}")
        rows += [
            Row.measured(
                f"bare SDK {kind} {size.label}", "records per CPU-second", bare.per_cpu_second, "records/s"
            ),
            Row.measured(f"bare SDK {kind} {size.label}", "peak RSS", bare.usage.peak_rss_mb, "MB"),
            Row.measured(
                f"{kind} {size.label} vs bare SDK",
                "ours ÷ bare, records per CPU-second",
                ours.per_cpu_second / bare.per_cpu_second,
                "ratio",
            ),
        ]
    return rows


def ledger_rows(bench: Bench) -> list[Row]:
    size = bench.sizes.small
    first, second, statuses = bench.ledger(size)
    name = f"target {size.label} twice, write ledger"
    unchanged = sum(1 for status in statuses if status == "unchanged")
    if not unchanged:
        bench.notes.append(
            "ledger: the second run reported no `unchanged` record; is `write_ledger_path` implemented?"
        )
    return [
        Row.measured(name, "second run's sync and delete calls", second.write_calls, "calls", LEDGER_GOAL),
        Row.measured(name, "second run's records unchanged", unchanged, "records"),
        Row.measured(name, "first run CPU", first.usage.cpu, "s"),
        Row.measured(name, "second run CPU", second.usage.cpu, "s"),
    ]


def validation_rows(bench: Bench) -> list[Row]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        validation.main(bench.sizes.validation_records)
    print(printed.getvalue(), end="")
    figures = dict(re.findall(r"^(.+?)\s+([\d.]+) us/record", printed.getvalue(), re.MULTILINE))
    return [
        Row.measured(f"validation: {label}", "per record", float(value), "µs")
        for label, value in figures.items()
    ]


def external_rows(bench: Bench, section: str) -> list[Row] | None:
    """Rows from a section another module provides, or None while that module does not exist."""
    module_name = EXTERNAL_SECTIONS[section]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name != module_name:
            raise
        return None
    workdir = bench.workdir / section
    workdir.mkdir(exist_ok=True)
    found: list[Row] = module.rows(workdir, quick=bench.sizes is QUICK)
    return found


SECTION_ROWS: dict[str, Callable[[Bench], list[Row]]] = {
    "tap": tap_rows,
    "target": target_rows,
    "memory": memory_rows,
    "bare": bare_rows,
    "ledger": ledger_rows,
    "validation": validation_rows,
}


def sections_of(text: str | None) -> list[str]:
    """`--only a,b` as sections in `SECTIONS` order; all of them without `--only`."""
    if text is None:
        return list(SECTIONS)
    wanted = {part.strip() for part in text.split(",") if part.strip()}
    unknown = wanted - set(SECTIONS)
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(sorted(unknown)) or '(none given)'};"
            f" choose from {', '.join(SECTIONS)}"
        )
    return [section for section in SECTIONS if section in wanted]


def run_sections(bench: Bench, sections: list[str]) -> list[Row]:
    rows: list[Row] = []
    for section in sections:
        started = time.monotonic()
        print(f"[{section}]", flush=True)
        if section in EXTERNAL_SECTIONS:
            found = external_rows(bench, section)
            if found is None:
                note = f"{section}: skipped, {EXTERNAL_SECTIONS[section]} is not there yet"
                print(f"  {note}", flush=True)
                bench.notes.append(note)
                continue
        else:
            found = SECTION_ROWS[section](bench)
        rows += found
        print(f"  {section}: {time.monotonic() - started:.0f} s", flush=True)
    return rows


@contextlib.contextmanager
def bench_in_tempdir(sizes: Sizes, *, repeat: int) -> Iterator[Bench]:
    with tempfile.TemporaryDirectory(prefix="marketo-bench-") as tmp:
        bench = Bench(Path(tmp), sizes, repeat=repeat)
        try:
            yield bench
        finally:
            bench.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="sizes a tenth of the full set")
    parser.add_argument(
        "--only", type=sections_of, default=None, metavar="SECTION[,SECTION]", help=", ".join(SECTIONS)
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per measurement; the least CPU is reported"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where the rows go (default: {LATEST.relative_to(ROOT)} for a full run, none otherwise)",
    )
    args = parser.parse_args(argv)
    sections = args.only or list(SECTIONS)
    sizes = QUICK if args.quick else FULL
    output = args.output or (LATEST if not args.quick and args.only is None else None)

    started = time.monotonic()
    with bench_in_tempdir(sizes, repeat=args.repeat) as bench:
        rows = run_sections(bench, sections)
        notes = bench.notes
    about = machine()
    print()
    print(table(rows))
    print(
        f"\n{about['date']} · {about['processor']}, {about['cpus']} CPUs · {about['platform']}"
        f" · Python {about['python']} · {time.monotonic() - started:.0f} s"
        f"{' · quick' if args.quick else ''}"
    )
    for note in notes:
        print(f"note: {note}")
    if output is not None:
        write(
            output,
            rows,
            extra={
                "quick": args.quick,
                "sections": sections,
                "repeat": args.repeat,
                "seconds": round(time.monotonic() - started),
                "notes": notes,
            },
        )
        print(f"rows written to {output}")


if __name__ == "__main__":
    main()
