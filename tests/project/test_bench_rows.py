"""`make bench`'s rows: goals decide `met`, calls are counted by kind, sections are chosen by name."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import rows, run
from bench.measure import Usage


@pytest.mark.parametrize(
    ("value", "goal", "met"),
    [
        (50_000, ">= 50000", True),
        (49_999.9, ">= 50000", False),
        (10, "<= 10", True),
        (10.01, "<= 10", False),
        (0, "== 0", True),
        (1, "== 0", False),
    ],
)
def test_goal_decides_met(value: float, goal: str, met: bool) -> None:
    row = rows.Row.measured("tap 200k", "records per CPU-second", value, "records/s", goal)
    assert (row.goal, row.met) == (goal, met)


def test_row_without_goal_has_no_verdict_and_table_marks_misses() -> None:
    context = rows.Row.measured("tap 30k", "wall", 2.5, "s")
    missed = rows.Row.measured("tap 200k", "records per CPU-second", 12_345, "records/s", ">= 50000")
    assert (context.goal, context.met) == (None, None)
    lines = rows.table([context, missed]).splitlines()
    assert lines[2] == "| tap 30k | wall | 2.50 | s |  |  |"
    assert lines[3] == "| tap 200k | records per CPU-second | 12,345 | records/s | >= 50000 | **no** |"


def test_written_document_holds_machine_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "results" / "latest.json"
    rows.write(path, [rows.Row.measured("x", "y", 1, "s", "<= 2")], extra={"quick": True})
    document = json.loads(path.read_text())
    assert set(document["machine"]) >= {"date", "python", "platform", "cpus"}
    assert document["quick"] is True
    assert document["rows"] == [
        {"name": "x", "metric": "y", "value": 1, "unit": "s", "goal": "<= 2", "met": True}
    ]


def test_only_sync_and_delete_posts_count_as_write_calls() -> None:
    by_endpoint = {
        "GET /identity/oauth/token": 2,
        "GET /rest/v1/opportunities/describe.json": 1,
        "QUERY /rest/v1/opportunities.json": 4,
        "POST /rest/v1/opportunities.json": 3,
        "POST /rest/v1/opportunities/roles/delete.json": 1,
    }
    assert run.write_calls(by_endpoint) == 4
    assert run.rest_calls(by_endpoint) == 9  # Identity is not a REST call


def test_calls_are_the_difference_between_two_stats() -> None:
    before = {"POST /rest/v1/opportunities.json": 5, "GET /rest/v1/opportunities/describe.json": 1}
    after = {**before, "POST /rest/v1/opportunities.json": 7, "QUERY /rest/v1/opportunities.json": 2}
    assert run.difference(after, before) == {
        "POST /rest/v1/opportunities.json": 2,
        "QUERY /rest/v1/opportunities.json": 2,
    }


def test_goal_sits_on_the_records_per_cpu_second_row_only() -> None:
    measured = run.Run(records=200_000, calls=800, usage=Usage(0, wall=9.0, cpu=4.0, peak_rss_mb=90.0))
    found = {row.metric: row for row in measured.rows("tap 200k", goal=">= 50000")}
    assert found["records per CPU-second"].value == 50_000
    assert found["records per CPU-second"].met is True
    assert found["records per call"].value == 250
    assert [row.metric for row in found.values() if row.goal is not None] == ["records per CPU-second"]


def test_memory_growth_is_relative_to_the_small_run() -> None:
    assert run.growth_percent(80.0, 88.0) == pytest.approx(10.0)
    assert run.growth_percent(80.0, 76.0) == pytest.approx(-5.0)


def test_only_keeps_the_bench_order_and_refuses_unknown_sections() -> None:
    assert run.sections_of("bare, tap") == ["tap", "bare"]
    assert run.sections_of(None) == list(run.SECTIONS)
    with pytest.raises(argparse.ArgumentTypeError, match="speed"):
        run.sections_of("tap,speed")


def test_missing_section_module_is_skipped_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(run.EXTERNAL_SECTIONS, "rate", "bench.no_such_section")
    bench = run.Bench(tmp_path, run.QUICK, repeat=1)
    assert run.run_sections(bench, ["rate"]) == []
    assert bench.notes == ["rate: skipped, bench.no_such_section is not there yet"]


def test_bare_tap_replays_the_real_taps_records_and_bare_target_takes_them(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
    messages = [
        {"type": "SCHEMA", "stream": "opportunities", "schema": schema, "key_properties": ["id"]},
        *(
            {"type": "RECORD", "stream": "opportunities", "record": {"id": i, "name": f"o{i}"}}
            for i in (1, 2)
        ),
        {"type": "SCHEMA", "stream": "opportunity_fields", "schema": schema, "key_properties": ["id"]},
        {"type": "RECORD", "stream": "opportunity_fields", "record": {"id": 9, "name": "ignored"}},
    ]
    source = tmp_path / "tap.singer"
    source.write_text("".join(json.dumps(message) + "\n" for message in messages))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"input_path": str(source)}))
    replayed = subprocess.run(
        [sys.executable, "-m", "bench.bare", "tap", "--config", str(config)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    records = [json.loads(line) for line in replayed.splitlines() if '"RECORD"' in line]
    assert [(m["stream"], m["record"]) for m in records] == [
        ("opportunities", {"id": 1, "name": "o1"}),
        ("opportunities", {"id": 2, "name": "o2"}),
    ]
    subprocess.run(
        [sys.executable, "-m", "bench.bare", "target"],
        input=replayed,
        capture_output=True,
        check=True,
        text=True,
    )
