"""target-marketo-opps as a command: crash and rerun, exit codes, messages, --about."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from marketo_sandbox import Sandbox
from tests.support.cli import EXECUTABLE, results_of, run_cli, write_config
from tests.support.target import (
    SAMPLE,
    deleted,
    opp,
    opp_schema,
    record,
    role,
    role_schema,
    singer_text,
    state,
    store_snapshot,
    target_config,
)

SandboxFactory = Callable[..., Sandbox]


def crash_input(seeded: list[str]) -> list[dict[str, Any]]:
    """200 opportunities with 2 roles each (roles first), plus updates and deletes of seeded data."""
    messages: list[dict[str, Any]] = []
    for n in range(1, 201):
        messages.append(role_schema())
        messages += [
            role(f"K-{n:03d}", 1 + (n + i * 7) % 60, f"Role {i}", isPrimary=i == 0) for i in range(2)
        ]
        messages += [opp_schema(), opp(f"K-{n:03d}", amount=n * 1.25, stage="Qualification")]
        if n % 20 == 0:
            messages.append(state({"bookmark": n}))
        if n == 100:
            messages += [
                opp(seeded[0], name="Renamed by the run"),
                deleted(record("opportunities", {"externalOpportunityId": seeded[1]})),
            ]
    messages += [opp("K-007", stage="Closed Won"), deleted(role("K-008", 1 + (8 + 7) % 60, "Role 1"))]
    messages.append(state({"bookmark": "end"}))
    return messages


def test_a_crash_then_a_rerun_leaves_marketo_as_a_clean_run(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    crashed = make_sandbox(opportunities=5, leads=60, heavy_leads=0, latency_seconds=0.03, rate_limit=None)
    clean = make_sandbox(opportunities=5, leads=60, heavy_leads=0, rate_limit=None)
    assert store_snapshot(crashed) == store_snapshot(clean)
    initial = len(clean.store.opportunities())
    seeded = [row["externalOpportunityId"] for row in clean.store.opportunities()[:2]]
    source = tmp_path / "input.singer"
    source.write_text(singer_text(crash_input(seeded)), encoding="utf-8")
    records = sum(1 for line in source.read_text().splitlines() if json.loads(line)["type"] == "RECORD")
    settings = {"batch_size_rows": 10, "max_concurrent_requests": 2, "max_calls_per_20s": 100}

    # 1. Killed (SIGKILL) in the middle of the run.
    first = write_config(tmp_path / "first.json", target_config(crashed, tmp_path, **settings))
    first_results = Path(json.loads(first.read_text())["results_path"])
    first_out = tmp_path / "first.out"
    returncode = interrupt_after_writes(first, source, first_out, crashed, writes=12, sig=signal.SIGKILL)
    assert returncode == -9, "the run finished before it could be killed"
    created = len(crashed.store.opportunities()) - initial
    assert 0 < created < 200, created
    assert_states_covered_by_results(first_out, source, first_results)

    # 2. The same input again, with the same results file, then 3. a clean run on a second sandbox.
    crashed.configure(latency_seconds=0)
    first_lines = first_results.read_text(encoding="utf-8").splitlines()
    second = write_config(
        tmp_path / "second.json",
        target_config(crashed, tmp_path, **settings, results_path=str(first_results)),
    )
    rerun = run_cli(second, source, tmp_path / "second.out")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    once = write_config(tmp_path / "clean.json", target_config(clean, tmp_path, **settings))
    complete = run_cli(once, source, tmp_path / "clean.out")
    assert complete.returncode == 0, complete.stderr[-2000:]

    assert store_snapshot(crashed) == store_snapshot(clean)
    assert len(clean.store.opportunities()) == initial + 200 - 1
    # The crashed run's lines are kept; the rerun's follow, one per record, under a new run id.
    lines = first_results.read_text(encoding="utf-8").splitlines()
    assert lines[: len(first_lines)] == first_lines
    rerun_results = [json.loads(line) for line in lines[len(first_lines) :]]
    crashed_run = {json.loads(line)["run"] for line in first_lines}
    rerun_run = {row["run"] for row in rerun_results}
    assert len(crashed_run) == len(rerun_run) == 1
    assert crashed_run != rerun_run
    assert sorted(row["record"] for row in rerun_results) == list(range(1, records + 1))
    assert (tmp_path / "second.out").read_text().splitlines()[-1] == '{"bookmark": "end"}'


def test_sigterm_exits_cleanly_with_a_truthful_state(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    slow = make_sandbox(opportunities=5, leads=60, heavy_leads=0, latency_seconds=0.03, rate_limit=None)
    seeded = [row["externalOpportunityId"] for row in slow.store.opportunities()[:2]]
    source = tmp_path / "input.singer"
    source.write_text(singer_text(crash_input(seeded)), encoding="utf-8")
    config = target_config(slow, tmp_path, batch_size_rows=10, max_concurrent_requests=2)
    path = write_config(tmp_path / "c.json", config)
    out = tmp_path / "out"
    returncode = interrupt_after_writes(path, source, out, slow, writes=15, sig=signal.SIGTERM)
    assert returncode == 0
    assert_states_covered_by_results(out, source, Path(config["results_path"]))


def interrupt_after_writes(
    config: Path, source: Path, out: Path, sandbox: Sandbox, *, writes: int, sig: signal.Signals
) -> int:
    """Run the CLI on `source`, send `sig` once the sandbox has seen `writes` write calls."""
    with source.open("rb") as stdin, out.open("wb") as stdout:
        process = subprocess.Popen(
            [EXECUTABLE, "--config", str(config)], stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            calls = sandbox.stats()["calls_by_endpoint"]
            if sum(v for k, v in calls.items() if k.startswith("POST /rest/v1/opportunities")) >= writes:
                break
            time.sleep(0.01)
        process.send_signal(sig)
        return process.wait(timeout=60)


def assert_states_covered_by_results(out: Path, source: Path, results_path: Path) -> None:
    """Every STATE the target printed came after all records before it had a result line on disk."""
    written = {row["record"] for row in results_of(results_path)}
    positions = _records_before_states(source)
    for line in out.read_text().splitlines():
        assert set(range(1, positions[json.dumps(json.loads(line))] + 1)) <= written


def _records_before_states(source: Path) -> dict[str, int]:
    seen, positions = 0, {}
    for line in source.read_text().splitlines():
        message = json.loads(line)
        if message["type"] == "RECORD":
            seen += 1
        elif message["type"] == "STATE":
            positions[json.dumps(message["value"])] = seen
    return positions


def test_crm_sync_gives_one_error_line_and_exit_1(make_sandbox: SandboxFactory, tmp_path: Path) -> None:
    crm = make_sandbox(opportunities=5, leads=60, heavy_leads=0, crm_sync=True)
    source = tmp_path / "in.singer"
    source.write_text(singer_text([opp_schema(), opp("C-1"), state({"s": 1})]), encoding="utf-8")
    config = write_config(tmp_path / "c.json", target_config(crm, tmp_path))
    done = run_cli(config, source, tmp_path / "out")
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "CRM sync makes Opportunities and Opportunity Roles read-only in Marketo" in errors[0]
    assert "Traceback" not in done.stderr
    assert (tmp_path / "out").read_text() == ""  # no STATE


def test_rejections_over_the_limit_exit_1_after_every_result(sandbox: Sandbox, tmp_path: Path) -> None:
    config = target_config(sandbox, tmp_path)
    del config["max_rejections"]  # the default: 0
    path = write_config(tmp_path / "c.json", config)
    done = run_cli(path, SAMPLE, tmp_path / "out")
    assert done.returncode == 1
    assert "records were rejected or skipped, more than max_rejections=0" in done.stderr
    records = sum(1 for line in SAMPLE.read_text().splitlines() if json.loads(line)["type"] == "RECORD")
    assert len(results_of(Path(config["results_path"]))) == records
    assert json.loads((tmp_path / "out").read_text().splitlines()[-1]) == {
        "bookmarks": {"opportunities": {"last_id": "DEMO-0023"}}
    }
    assert sandbox.store.opportunity("DEMO-0020") is not None


def test_id_field_without_update_only_is_refused_by_the_cli(tmp_path: Path) -> None:
    config = {
        "base_url": "http://127.0.0.1:9",
        "client_id": "a",
        "client_secret": "b6f1c0e2-secret",
        "dedupe_by": "idField",
    }
    path = write_config(tmp_path / "c.json", config)
    source = tmp_path / "empty.singer"
    source.write_text("", encoding="utf-8")
    done = run_cli(path, source, tmp_path / "out")
    assert done.returncode == 1
    assert "dedupe_by idField" in done.stderr
    assert "updateOnly" in done.stderr


def test_config_errors_never_print_the_client_secret(tmp_path: Path) -> None:
    # jsonschema quotes the offending value: "987654321 is not of type 'string'".
    config = {"base_url": "http://127.0.0.1:9", "client_id": "a", "client_secret": 987654321}
    path = write_config(tmp_path / "c.json", config)
    source = tmp_path / "empty.singer"
    source.write_text("", encoding="utf-8")
    done = run_cli(path, source, tmp_path / "out")
    assert done.returncode == 1
    assert "config['client_secret']" in done.stderr
    assert "987654321" not in done.stderr


def test_about_describes_every_setting() -> None:
    done = subprocess.run(
        [EXECUTABLE, "--about", "--format", "json"], capture_output=True, text=True, check=True
    )
    about = json.loads(done.stdout)
    assert about["name"] == "target-marketo-opps"
    properties = about["settings"]["properties"]
    for name in (
        "action",
        "dedupe_by",
        "batch_size_rows",
        "stream_objects",
        "results_path",
        "max_rejections",
    ):
        assert properties[name]["description"], name
    assert properties["action"]["enum"] == ["createOrUpdate", "createOnly", "updateOnly"]
    assert properties["max_rejections"]["default"] == 0
    assert "Opportunities" in about["description"]


def test_about_markdown_starts_with_unindented_text() -> None:
    done = subprocess.run(
        [EXECUTABLE, "--about", "--format=markdown"], capture_output=True, text=True, check=True
    )
    head = done.stdout.split("## Settings")[0].splitlines()
    assert head[0] == "# `target-marketo-opps`"
    # Four leading spaces would make Markdown render the description as a code block.
    assert [line for line in head if line.startswith("    ")] == []
    assert any(line.startswith("Writes Adobe Marketo Engage Opportunities") for line in head)


def test_about_says_load_method_has_no_effect() -> None:
    done = subprocess.run(
        [EXECUTABLE, "--about", "--format", "json"], capture_output=True, text=True, check=True
    )
    description = json.loads(done.stdout)["settings"]["properties"]["load_method"]["description"]
    assert "without effect" in description
    assert "upsert will update" not in description
    assert "action setting" in description
