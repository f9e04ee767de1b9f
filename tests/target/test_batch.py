"""Singer BATCH messages: their records are read like RECORD messages, or the run stops clearly."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from marketo_sandbox import Sandbox
from target_marketo_opps.records import INVALID_RECORD
from tests.support.cli import results_of, run_cli, write_config
from tests.support.target import opp, opp_schema, role_schema, run_target, state, target_config

SandboxFactory = Callable[..., Sandbox]
TAP = str(Path(sys.executable).parent / "tap-marketo-opps")
METADATA_STREAMS = {"opportunity_fields": "__NULL__", "opportunity_role_fields": "__NULL__"}


def batch(stream: str, files: list[Path], **encoding: Any) -> dict[str, Any]:
    return {
        "type": "BATCH",
        "stream": stream,
        "encoding": {"format": "jsonl", **encoding},
        "manifest": [f.as_uri() for f in files],
    }


def jsonl(path: Path, rows: list[Any], *, compress: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_the_taps_batch_output_is_written_record_by_record(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sb = make_sandbox(opportunities=40, leads=60, heavy_leads=0, rate_limit=None)
    storage = tmp_path / "batches"
    storage.mkdir()
    tap_config = {
        **sb.connection_settings(),
        "lead_id_range": {"start": 1, "end": 60},
        "batch_config": {
            "encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": storage.as_uri(), "prefix": "b-"},
        },
    }
    tapped = subprocess.run(
        [TAP, "--config", str(write_config(tmp_path / "tap.json", tap_config))],
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert tapped.returncode == 0, tapped.stderr[-2000:]
    messages = [json.loads(line) for line in tapped.stdout.splitlines()]
    batches = [
        m for m in messages if m["type"] == "BATCH" and m["stream"] in ("opportunities", "opportunity_roles")
    ]
    assert batches, "the tap emitted no BATCH message"
    assert not any(m["type"] == "RECORD" for m in messages)
    expected: list[tuple[str, int]] = []
    for message in batches:
        for url in message["manifest"]:
            with gzip.open(Path(url.removeprefix("file://"))) as lines:
                expected += [(url, n) for n, _ in enumerate(lines, start=1)]
    source = tmp_path / "tap.out"
    source.write_bytes(tapped.stdout)

    config = target_config(sb, tmp_path, stream_maps=METADATA_STREAMS)
    done = run_cli(write_config(tmp_path / "target.json", config), source, tmp_path / "out")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = results_of(Path(config["results_path"]))
    assert sorted((row["batch"]["file"], row["batch"]["line"]) for row in rows) == sorted(expected)
    assert {row["status"] for row in rows} == {"updated"}
    assert sorted(row["record"] for row in rows) == list(range(1, len(expected) + 1))
    last_state = next(m["value"] for m in reversed(messages) if m["type"] == "STATE")
    assert json.loads((tmp_path / "out").read_text().splitlines()[-1]) == last_state


def test_batch_records_share_the_record_numbering_checks_and_outcomes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    existing = sandbox.store.opportunities()[0]["externalOpportunityId"]
    plain = jsonl(
        tmp_path / "a.jsonl",
        [
            {"externalOpportunityId": "B-1", "name": "From a batch", "amount": 12.5},
            [1, 2],
            {"externalOpportunityId": existing, "_sdc_deleted_at": "2026-11-01T00:00:00Z"},
        ],
    )
    packed = jsonl(
        tmp_path / "b.jsonl.gz", [{"externalOpportunityId": "B-2", "name": "Packed"}], compress=True
    )
    run = run_target(
        target_config(sandbox, tmp_path),
        [
            opp_schema(),
            opp("R-1"),
            batch("opportunities", [plain]),
            state({"s": 1}),
            batch("opportunities", [packed], compression="gzip"),
            opp("R-2"),
            state({"s": 2}),
        ],
    )
    statuses = {n: run.status_of(n) for n in range(1, 7)}
    assert statuses == {1: "created", 2: "created", 3: "rejected", 4: "deleted", 5: "created", 6: "created"}
    rows = run.by_record()
    assert rows[2]["batch"] == {"file": plain.as_uri(), "line": 1}
    assert rows[2]["line"] == 3
    assert rows[5]["batch"] == {"file": packed.as_uri(), "line": 1}
    assert rows[6]["batch"] is None
    assert rows[6]["line"] == 6
    assert rows[3]["reasons"][0]["code"] == INVALID_RECORD
    assert f"batch file {plain.as_uri()} line 2" in rows[3]["reasons"][0]["message"]
    written = sandbox.store.opportunity("B-1")
    assert written is not None
    assert written["amount"] == "12.50"  # exact decimals, as the store keeps currency
    assert sandbox.store.opportunity(existing) is None
    assert run.states[-1] == {"s": 2}


@pytest.mark.parametrize(
    ("encoding", "fragment"),
    [({"format": "parquet"}, "'parquet'"), ({"format": "jsonl", "compression": "bz2"}, "'bz2'")],
    ids=["parquet", "bz2"],
)
def test_an_unreadable_batch_encoding_stops_the_run_before_any_later_state(
    sandbox: Sandbox, tmp_path: Path, encoding: dict[str, Any], fragment: str
) -> None:
    data = jsonl(tmp_path / "a.jsonl", [{"externalOpportunityId": "U-1", "name": "u"}])
    message = {**batch("opportunities", [data]), "encoding": encoding}
    run = run_target(
        target_config(sandbox, tmp_path),
        [opp_schema(), opp("U-0"), state({"s": 1}), message, state({"s": 2})],
        raise_errors=False,
    )
    assert run.error is not None
    assert str(run.error).startswith("Input line 4 (BATCH)")
    assert fragment in str(run.error)
    assert {"s": 2} not in run.states
    assert sandbox.store.opportunity("U-1") is None


def test_a_bad_line_in_a_batch_file_names_the_file_and_line_and_keeps_known_outcomes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    data = tmp_path / "a.jsonl"
    data.write_text(
        '{"externalOpportunityId": "L-1", "name": "x"}\n{"externalOpportunityId": \n', encoding="utf-8"
    )
    run = run_target(
        target_config(sandbox, tmp_path, batch_size_rows=1),
        [opp_schema(), opp("L-0"), batch("opportunities", [data]), state({"s": 2})],
        raise_errors=False,
    )
    assert run.error is not None
    assert str(run.error).startswith(f"Input line 3 (BATCH): batch file {data.as_uri()} line 2")
    assert run.states == []
    # Both earlier records were sent (batches of 1): their outcomes reached the file.
    assert [run.status_of(n) for n in (1, 2)] == ["created", "created"]


def test_a_missing_batch_file_is_a_clear_error(sandbox: Sandbox, tmp_path: Path) -> None:
    run = run_target(
        target_config(sandbox, tmp_path),
        [opp_schema(), batch("opportunities", [tmp_path / "gone.jsonl"])],
        raise_errors=False,
    )
    assert run.error is not None
    assert str(run.error).startswith("Input line 2 (BATCH): batch file")
    assert "gone.jsonl" in str(run.error)


def test_a_batch_of_a_stream_dropped_by_stream_maps_is_ignored(sandbox: Sandbox, tmp_path: Path) -> None:
    # singer-sdk taps drop such a stream's SCHEMA and RECORDs but still emit its BATCH messages.
    data = jsonl(tmp_path / "fields.jsonl", [{"name": "amount", "dataType": "currency"}])
    run = run_target(
        target_config(sandbox, tmp_path, stream_maps=METADATA_STREAMS),
        [role_schema(), batch("opportunity_fields", [data]), state({"s": 1})],
    )
    assert run.results == []
    assert run.states == [{"s": 1}]


def test_a_batch_before_its_schema_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    data = jsonl(tmp_path / "a.jsonl", [{"externalOpportunityId": "S-1", "name": "s"}])
    run = run_target(target_config(sandbox, tmp_path), [batch("opportunities", [data])], raise_errors=False)
    assert run.error is not None
    assert "Input line 1 (BATCH)" in str(run.error)
    assert "before a corresponding schema" in str(run.error)
