"""How the target reads its input: fatal errors name the line and keep every known outcome, values
and flags are read strictly, and the results file survives odd text and write errors."""

from __future__ import annotations

import json
import logging
import resource
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketo_api import MarketoObject, Reason
from marketo_sandbox import Sandbox
from target_marketo_opps.records import INVALID_RECORD, INVALID_VALUE, Item, Outcome
from target_marketo_opps.results import ResultsLog
from tests.support.cli import EXECUTABLE, results_of, run_cli, write_config
from tests.support.payloads import builder
from tests.support.target import (
    OPP_PROPERTIES,
    opp,
    opp_schema,
    record,
    role,
    run_target,
    schema,
    singer_text,
    state,
    target_config,
)

SandboxFactory = Callable[..., Sandbox]

# Without `_sdc_deleted_at` in the schema, so the flag's value reaches the target unchecked.
LOOSE_OPP_SCHEMA = schema(
    "opportunities",
    {k: v for k, v in OPP_PROPERTIES.items() if k != "_sdc_deleted_at"},
    ["externalOpportunityId"],
)


def many_opportunities(count: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [opp_schema()]
    for n in range(1, count + 1):
        messages.append(opp(f"IN-{n:04d}", amount=n))
        if n % 50 == 0:
            messages.append(state({"done": n}))
    return messages


# ---- 4: a fatal input error after records were sent keeps every known outcome ------------------

BAD_TAILS: dict[str, list[str]] = {
    "malformed line": ['{"type": "RECORD", "stream": "opportunities", "record": {"externalOpp'],
    "unknown message type": [json.dumps({"type": "RECORDS", "stream": "opportunities", "record": {}})],
    "record before schema": [json.dumps(role("IN-0001", 1))],
    "bad schema": [json.dumps(schema("opportunity_roles", {"role": {"type": "no-such-type"}}, []))],
    "unknown stream arriving late": [json.dumps(opp_schema("crm_deals"))],
}


@pytest.mark.parametrize("tail", list(BAD_TAILS), ids=list(BAD_TAILS))
def test_a_fatal_input_error_writes_the_input_before_it_and_names_the_line(
    make_sandbox: SandboxFactory, tmp_path: Path, tail: str
) -> None:
    sb = make_sandbox(opportunities=5, leads=20, heavy_leads=0, latency_seconds=0.05, rate_limit=None)
    lines = singer_text(many_opportunities(300)).splitlines() + BAD_TAILS[tail]
    source = tmp_path / "in.singer"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = target_config(sb, tmp_path, batch_size_rows=10, max_concurrent_requests=5)
    done = run_cli(write_config(tmp_path / "c.json", config), source, tmp_path / "out")

    # Every record Marketo holds now has its line; no line claims a record Marketo does not hold.
    written = {
        o["externalOpportunityId"]
        for o in sb.store.opportunities()
        if o["externalOpportunityId"].startswith("IN-")
    }
    rows = results_of(Path(config["results_path"]))
    # The input before the bad line is good: all of it is written before the run fails.
    assert written == {f"IN-{n:04d}" for n in range(1, 301)}
    assert {row["key"]["externalOpportunityId"] for row in rows} == written
    assert all(row["status"] == "created" for row in rows)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert errors, done.stderr[-2000:]
    assert f"Input line {len(lines)}" in errors[-1]
    # STATE never runs ahead of the lines on disk, and none follows the bad line.
    recorded = {row["record"] for row in rows}
    states = [json.loads(line)["done"] for line in (tmp_path / "out").read_text().splitlines()]
    for done_through in states:
        assert set(range(1, done_through + 1)) <= recorded
    assert states[-1] == 300  # the STATE given before the bad line, now true, is passed on


def test_a_lone_surrogate_in_a_key_is_rejected_and_the_results_file_stays_readable(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    source = tmp_path / "in.singer"
    # JSON may escape half a surrogate pair; Python reads it into a string UTF-8 cannot encode.
    source.write_text(
        singer_text([opp_schema(), opp("GOOD-1")])
        + '{"type": "RECORD", "stream": "opportunities", "record": '
        '{"externalOpportunityId": "BAD-\\ud800", "name": "x"}}\n'
        + singer_text([opp("GOOD-2"), state({"s": 1})]),
        encoding="utf-8",
    )
    config = target_config(sandbox, tmp_path)
    path = write_config(tmp_path / "c.json", config)
    for attempt in range(2):  # a rerun appends to the same file
        done = run_cli(path, source, tmp_path / "out")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Logging error" not in done.stderr
        rows = results_of(Path(config["results_path"]))
        assert len(rows) == 3 * (attempt + 1)
        bad = [row for row in rows if row["key"]["externalOpportunityId"] == "BAD-\ud800"]
        assert [row["status"] for row in bad] == ["rejected"] * (attempt + 1)
        assert bad[0]["reasons"][0]["code"] == INVALID_VALUE
        assert "externalOpportunityId" in bad[0]["reasons"][0]["message"]
        assert bad[0]["line"] == 3
        assert (tmp_path / "out").read_text() == '{"s": 1}\n'
    assert sandbox.store.opportunity("GOOD-2") is not None


def test_results_lines_with_a_lone_surrogate_are_written_as_valid_utf8(tmp_path: Path) -> None:
    log = ResultsLog(str(tmp_path / "r.jsonl"), run_id="r")
    key = {"k": "\udc00é"}
    item = Item(1, "opportunities", MarketoObject.OPPORTUNITY, "sync", "createOrUpdate", "dedupeFields", key)
    log.record(item, Outcome("rejected", reasons=(Reason(INVALID_VALUE, "bad text"),)))
    log.close()
    data = (tmp_path / "r.jsonl").read_bytes()
    assert json.loads(data.decode("utf-8"))["key"] == key
    summary = log.summary_lines()[1]
    summary.encode("utf-8")  # the log handler can write it
    assert '{"k":"\\udc00\\u00e9"}' in summary


def test_an_unwritable_results_path_stops_the_run_before_any_call(sandbox: Sandbox, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("", encoding="utf-8")
    config = target_config(sandbox, tmp_path, results_path=str(blocker / "results.jsonl"))
    source = tmp_path / "in.singer"
    source.write_text(singer_text([opp_schema(), opp("W-1"), state({"s": 1})]), encoding="utf-8")
    done = run_cli(write_config(tmp_path / "c.json", config), source, tmp_path / "out")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "results_path" in done.stderr
    assert str(blocker) in done.stderr
    assert sandbox.stats()["calls_by_endpoint"] == {}
    assert (tmp_path / "out").read_text() == ""


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_results_write_error_stops_the_run_with_whole_lines_and_a_true_state(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sb = make_sandbox(opportunities=5, leads=20, heavy_leads=0, rate_limit=None)
    source = tmp_path / "in.singer"
    source.write_text(singer_text(many_opportunities(400)), encoding="utf-8")
    config = target_config(sb, tmp_path, batch_size_rows=25, max_concurrent_requests=1)
    path = write_config(tmp_path / "c.json", config)
    with source.open("rb") as stdin, (tmp_path / "out").open("wb") as stdout:
        done = subprocess.run(
            [EXECUTABLE, "--config", str(path)],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
            preexec_fn=_limit_file_size(20_000),  # about 60 results lines
        )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "cannot write to results_path" in done.stderr
    text = Path(config["results_path"]).read_text(encoding="utf-8")
    assert text.endswith("\n")
    rows = [json.loads(line) for line in text.splitlines()]  # whole lines only
    recorded = {row["record"] for row in rows}
    states = [json.loads(line)["done"] for line in (tmp_path / "out").read_text().splitlines()]
    assert len(rows) < 400
    for done_up_to in states:
        assert set(range(1, done_up_to + 1)) <= recorded

    # A rerun without the limit repairs nothing by hand and finishes.
    again = run_cli(path, source, tmp_path / "out2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tmp_path / "out2").read_text().splitlines()[-1] == '{"done": 400}'


# ---- 5: values and flags are read strictly ---------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "outcome"),
    [
        (False, "updated"),
        (None, "updated"),
        ("", "updated"),
        (True, "deleted"),
        ("2026-11-01T00:00:00Z", "deleted"),
        (0, "rejected"),
        (1, "rejected"),
        ("yes", "rejected"),
    ],
)
def test_only_a_timestamp_or_true_in_sdc_deleted_at_deletes(
    sandbox: Sandbox, tmp_path: Path, flag: Any, outcome: str
) -> None:
    existing = sandbox.store.opportunities()[0]["externalOpportunityId"]
    run = run_target(
        target_config(sandbox, tmp_path),
        [
            LOOSE_OPP_SCHEMA,
            record("opportunities", {"externalOpportunityId": existing, "_sdc_deleted_at": flag}),
        ],
    )
    assert run.status_of(1) == outcome
    assert (sandbox.store.opportunity(existing) is None) == (outcome == "deleted")
    if outcome == "rejected":
        assert run.reason_codes(1) == [INVALID_VALUE]
        assert "_sdc_deleted_at" in run.by_record()[1]["reasons"][0]["message"]


def test_a_date_with_a_junk_time_is_rejected_not_cut_to_the_date() -> None:
    item = builder().build(
        1, "opportunities", {"externalOpportunityId": "X", "closeDate": "2024-01-01Tjunk"}, deleted=False
    )
    assert item.rejection is not None
    assert item.rejection.code == INVALID_VALUE
    assert "closeDate" in item.rejection.message
    fine = builder().build(
        1, "opportunities", {"externalOpportunityId": "X", "closeDate": "2024-01-01T10:00:00Z"}, deleted=False
    )
    assert fine.rejection is None
    assert fine.payload["closeDate"] == "2024-01-01"


def test_naive_datetimes_are_written_as_utc_with_one_warning_per_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    build = builder()
    with caplog.at_level(logging.WARNING):
        for n in range(3):
            item = build.build(
                n,
                "opportunities",
                {"externalOpportunityId": "X", "externalCreatedDate": f"2024-01-0{n + 1}T10:00:00"},
                deleted=False,
            )
            assert item.payload["externalCreatedDate"] == f"2024-01-0{n + 1}T10:00:00+00:00"
        build.build(
            9,
            "opportunities",
            {"externalOpportunityId": "X", "externalCreatedDate": "2024-01-01T10:00:00Z"},
            deleted=False,
        )
    warned = [r.getMessage() for r in caplog.records if "externalCreatedDate" in r.getMessage()]
    assert len(warned) == 1
    assert "UTC" in warned[0]


def test_a_utf8_byte_order_mark_on_line_1_is_accepted(sandbox: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "in.singer"
    source.write_bytes(b"\xef\xbb\xbf" + singer_text([opp_schema(), opp("BOM-1"), state({"s": 1})]).encode())
    config = target_config(sandbox, tmp_path)
    done = run_cli(write_config(tmp_path / "c.json", config), source, tmp_path / "out")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [row["status"] for row in results_of(Path(config["results_path"]))] == ["created"]
    assert sandbox.store.opportunity("BOM-1") is not None


@pytest.mark.parametrize("value", [[1, 2], "text", None])
def test_a_record_that_is_not_an_object_is_rejected_naming_its_line(
    sandbox: Sandbox, tmp_path: Path, value: Any
) -> None:
    run = run_target(
        target_config(sandbox, tmp_path),
        [
            opp_schema(),
            opp("NO-1"),
            {"type": "RECORD", "stream": "opportunities", "record": value},
            opp("NO-2"),
        ],
    )
    assert [run.status_of(n) for n in (1, 2, 3)] == ["created", "rejected", "created"]
    row = run.by_record()[2]
    assert row["reasons"][0]["code"] == INVALID_RECORD
    assert "input line 3" in row["reasons"][0]["message"]
    assert row["line"] == 3


def test_a_whitespace_only_key_is_reported_blank() -> None:
    item = builder().build(1, "opportunities", {"externalOpportunityId": " \t", "name": "n"}, deleted=False)
    assert item.rejection is not None
    assert "'externalOpportunityId' is blank" in item.rejection.message


FATAL_LINES: dict[str, str] = {
    "not JSON": "{nope",
    "not an object": "[1, 2]",
    "no type": '{"stream": "opportunities"}',
    "unknown type": '{"type": "RECORDZ"}',
    "schema without properties": '{"type": "SCHEMA", "stream": "opportunities", "schema": {}}',
    "record without stream": '{"type": "RECORD", "record": {}}',
    "nested too deeply": '{"type": "RECORD", "stream": "opportunities", "record": {"x": '
    + "[" * 100_000
    + "]" * 100_000
    + "}}",
    "unreadable batch encoding": '{"type": "BATCH", "stream": "opportunities", '
    '"encoding": {"format": "parquet"}, "manifest": []}',
}


@pytest.mark.parametrize("line", list(FATAL_LINES.values()), ids=list(FATAL_LINES))
def test_every_fatal_input_error_names_its_line(sandbox: Sandbox, tmp_path: Path, line: str) -> None:
    text = singer_text([opp_schema(), opp("F-1"), state({"s": 1})]) + line + "\n"
    run = run_target(target_config(sandbox, tmp_path), text, raise_errors=False)
    assert run.error is not None
    assert str(run.error).startswith("Input line 4"), str(run.error)
