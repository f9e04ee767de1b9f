"""tap-marketo-results reads the target's real results file; a bad line stops it, naming line and field."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from marketo_sandbox import Sandbox
from tap_marketo_results.tap import ResultsFileError, TapMarketoResults, parse_line
from target_marketo_opps.target import TargetMarketoOpps
from tests.support.paths import DATA

SAMPLE = DATA / "target" / "sample.singer"


def sync(results: Path) -> list[dict[str, Any]]:
    buffer = io.StringIO()
    tap = TapMarketoResults(config={"results_path": str(results)}, parse_env_config=False)
    with contextlib.redirect_stdout(buffer):
        tap.sync_all()
    messages = [json.loads(line) for line in buffer.getvalue().splitlines()]
    return [m["record"] for m in messages if m["type"] == "RECORD"]


def test_every_line_of_a_real_results_file_becomes_one_record(sandbox: Sandbox, tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    config = {**sandbox.connection_settings(), "results_path": str(results), "max_rejections": None}
    target = TargetMarketoOpps(config=config, parse_env_config=False)
    with SAMPLE.open() as lines, contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        target.listen(lines)
    written = [json.loads(line) for line in results.read_text().splitlines()]
    assert written

    records = sync(results)
    assert len(records) == len(written)
    for number, (record, line) in enumerate(zip(records, written, strict=True), start=1):
        assert (record["results_file"], record["results_line"]) == (str(results), number)
        for name in ("run", "record", "stream", "status", "marketoGUID", "key", "reasons", "note"):
            assert record[name] == line[name], name
        codes = [r["code"] for r in line["reasons"]]
        assert record["reason_codes"] == (",".join(codes) or None)
        assert record["run_started_at"].startswith(line["run"][:19])
    assert {r["status"] for r in records} >= {"rejected"}  # the sample has bad records on purpose


def test_unknown_fields_are_kept_not_dropped() -> None:
    record = parse_line('{"run": "r", "record": 1, "status": "created", "new_field": 7}', path="f", number=3)
    assert record["extra"] == {"new_field": 7}
    assert record["run_started_at"] is None  # "r" is not a "<time>/<pid>" run id


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"run": "r", "record": 1', "f line 4: not JSON"),
        ("[1, 2]", "f line 4: not a JSON object"),
        ('{"run": "r", "status": "created"}', "f line 4: field 'record' is missing"),
        (
            '{"run": "r", "record": "1", "status": "created"}',
            "f line 4: field 'record' should be int, not str",
        ),
        (
            '{"run": "r", "record": true, "status": "created"}',
            "f line 4: field 'record' should be int, not bool",
        ),
        ('{"run": "r", "record": 1, "status": "x", "reasons": [3]}', "f line 4: field 'reasons' item 0"),
    ],
)
def test_a_line_that_is_not_a_results_line_names_the_line_and_field(line: str, message: str) -> None:
    with pytest.raises(ResultsFileError) as caught:
        parse_line(line, path="f", number=4)
    assert str(caught.value).startswith(message)


def test_a_bad_line_stops_the_run_instead_of_being_dropped(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    good = '{"run": "2026-12-02T10:00:00.000000Z/1", "record": 1, "status": "created"}'
    results.write_text(f"{good}\n\n{{broken\n")
    with pytest.raises(ResultsFileError, match=r"results.jsonl line 3: not JSON"):
        sync(results)


def test_a_missing_results_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsFileError, match="is not a file"):
        sync(tmp_path / "nothing.jsonl")
