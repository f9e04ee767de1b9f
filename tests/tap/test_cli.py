"""The tap as a command: --about, --discover then a sync, and a run killed half-way then resumed."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from marketo_sandbox import Sandbox, SandboxConfig
from tap_marketo_opps.testing import select

WINDOW = 1.0


def command() -> list[str]:
    """The installed console script if there is one, else `python -m tap_marketo_opps`."""
    script = Path(sys.executable).parent / "tap-marketo-opps"
    if script.exists():
        return [str(script)]
    found = shutil.which("tap-marketo-opps")
    return [found] if found else [sys.executable, "-m", "tap_marketo_opps"]


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxConfig.small(leads=1500, opportunities=400, rate_window_seconds=WINDOW)) as sb:
        yield sb


def _run(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def messages(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def guids(msgs: list[dict[str, Any]], stream: str) -> set[str]:
    return {m["record"]["marketoGUID"] for m in msgs if m["type"] == "RECORD" and m["stream"] == stream}


def expected_for_leads(sb: Sandbox, first: int, last: int) -> dict[str, set[str]]:
    roles = [r for r in sb.store.roles() if first <= r["leadId"] <= last]
    ids = {r["externalOpportunityId"] for r in roles}
    return {
        "opportunities": {
            o["marketoGUID"] for o in sb.store.opportunities() if o["externalOpportunityId"] in ids
        },
        "opportunity_roles": {r["marketoGUID"] for r in roles},
    }


def test_about_markdown_lists_every_setting() -> None:
    result = _run([*command(), "--about", "--format=markdown"], timeout=60)
    assert result.returncode == 0, result.stderr
    for setting in (
        "lead_id_range",
        "external_opportunity_ids_file",
        "filters",
        "daily_call_budget",
        "start_date",
    ):
        assert setting in result.stdout


def test_discover_then_sync(sandbox: Sandbox, tmp_path: Path) -> None:
    config = write_json(
        tmp_path / "config.json",
        {
            **sandbox.connection_settings(),
            "rate_window_seconds": WINDOW,
            "lead_id_range": {"start": 1, "end": 1500},
        },
    )
    sandbox.reset_stats()
    discovered = _run(
        [*command(), "--config", str(config), "--discover"],
        timeout=120,
    )
    assert discovered.returncode == 0, discovered.stderr
    catalog = json.loads(discovered.stdout)
    assert sorted(s["tap_stream_id"] for s in catalog["streams"]) == [
        "opportunities",
        "opportunity_fields",
        "opportunity_role_fields",
        "opportunity_roles",
    ]
    endpoints = sandbox.stats()["calls_by_endpoint"]
    assert endpoints["GET /rest/v1/opportunities/describe.json"] == 1
    assert endpoints["GET /rest/v1/opportunities/roles/describe.json"] == 1
    assert sandbox.stats()["rest_calls"] == 2

    catalog_file = write_json(
        tmp_path / "catalog.json", select(catalog, ["opportunities", "opportunity_roles"])
    )
    sandbox.reset_stats()
    synced = _run(
        [*command(), "--config", str(config), "--catalog", str(catalog_file)],
        timeout=120,
    )
    assert synced.returncode == 0, synced.stderr
    out = messages(synced.stdout)
    want = expected_for_leads(sandbox, 1, 1500)
    assert guids(out, "opportunities") == want["opportunities"]
    assert guids(out, "opportunity_roles") == want["opportunity_roles"]
    assert not any("describe" in name for name in sandbox.stats()["calls_by_endpoint"])
    assert "Marketo calls:" in synced.stderr
    amounts = [m["record"]["amount"] for m in out if m["type"] == "RECORD" and m["stream"] == "opportunities"]
    assert all(isinstance(a, float | int) or a is None for a in amounts)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_run_resumes_without_missing_records(sandbox: Sandbox, tmp_path: Path, sig: int) -> None:
    sandbox.configure(latency_seconds=0.03)
    config = {
        **sandbox.connection_settings(),
        "rate_window_seconds": WINDOW,
        "lead_id_range": {"start": 1, "end": 3000},
        "max_concurrent_requests": 1,
    }
    config_file = write_json(tmp_path / "config.json", config)
    catalog_file = tmp_path / "catalog.json"
    discovered = _run(
        [*command(), "--config", str(config_file), "--discover"],
        timeout=120,
    )
    assert discovered.returncode == 0, discovered.stderr
    write_json(catalog_file, select(json.loads(discovered.stdout), ["opportunities", "opportunity_roles"]))

    stderr = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        [*command(), "--config", str(config_file), "--catalog", str(catalog_file)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            message = json.loads(line)
            point = message.get("value", {}).get("bookmarks", {}).get("key_batches", {}).get("checkpoint")
            if message["type"] == "STATE" and point and point["batches_done"] >= 3:
                proc.send_signal(sig)
                break
        # The rest from the same buffered reader: communicate() would read the pipe itself and
        # miss what the reader already holds, cutting a line in two.
        lines.append(proc.stdout.read())
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        stderr.close()
    first = messages("".join(lines))
    states = [m["value"] for m in first if m["type"] == "STATE"]
    last_state = states[-1]
    done = last_state["bookmarks"]["key_batches"]["checkpoint"]["batches_done"]
    assert 3 <= done < 10, "the run should have been stopped half-way"
    if sig == signal.SIGTERM:
        assert proc.returncode == 0  # the SDK writes the state and exits cleanly on SIGTERM

    state_file = write_json(tmp_path / "state.json", last_state)
    resumed = _run(
        [
            *command(),
            "--config",
            str(config_file),
            "--catalog",
            str(catalog_file),
            "--state",
            str(state_file),
        ],
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    second = messages(resumed.stdout)
    assert f"resuming after batch {done}" in resumed.stderr
    want = expected_for_leads(sandbox, 1, 3000)
    for stream in ("opportunities", "opportunity_roles"):
        assert guids(first, stream) | guids(second, stream) == want[stream]
    final = [m["value"] for m in second if m["type"] == "STATE"][-1]
    assert "checkpoint" not in final["bookmarks"]["key_batches"]
    assert final["bookmarks"]["opportunities"]["replication_key"] == "updatedAt"


def test_quota_stop_exits_1_after_writing_the_state(sandbox: Sandbox, tmp_path: Path) -> None:
    config = {
        **sandbox.connection_settings(),
        "rate_window_seconds": WINDOW,
        "lead_id_range": {"start": 1, "end": 1500},
        "max_concurrent_requests": 1,
    }
    config_file = write_json(tmp_path / "config.json", config)
    discovered = _run([*command(), "--config", str(config_file), "--discover"], timeout=120)
    assert discovered.returncode == 0, discovered.stderr
    catalog_file = write_json(
        tmp_path / "catalog.json",
        select(json.loads(discovered.stdout), ["opportunities", "opportunity_roles"]),
    )
    sandbox.reset_stats()
    sandbox.configure(daily_quota=6)  # past the first follow-up query, which pools batches 1-3
    stopped = _run([*command(), "--config", str(config_file), "--catalog", str(catalog_file)], timeout=120)
    assert stopped.returncode == 1
    assert "Stopped early: Marketo's daily API quota is used up (error 607" in stopped.stderr
    assert "Traceback" not in stopped.stderr  # a clean stop, already explained
    last = messages(stopped.stdout)[-1]
    assert last["type"] == "STATE"
    assert last["value"]["bookmarks"]["key_batches"]["checkpoint"]["batches_done"] >= 1


@pytest.mark.parametrize("mode", [[], ["--discover"]], ids=["sync", "discover"])
def test_config_errors_never_print_the_client_secret(tmp_path: Path, mode: list[str]) -> None:
    # A number is not a valid client_secret, and jsonschema's message quotes the value.
    config = write_json(
        tmp_path / "config.json",
        {"client_id": "id", "client_secret": 987654321, "base_url": "http://127.0.0.1:9", "lead_ids": [1]},
    )
    result = _run([*command(), "--config", str(config), *mode], timeout=60)
    assert result.returncode == 1
    assert "987654321" not in result.stdout + result.stderr
    assert "<redacted> is not of type 'string' in config['client_secret']" in result.stderr


@pytest.mark.parametrize("mode", ["discover", "sync"])
def test_refused_credentials_are_one_clear_line(sandbox: Sandbox, tmp_path: Path, mode: str) -> None:
    good = {**sandbox.connection_settings(), "lead_ids": [1]}
    config = write_json(tmp_path / "config.json", {**good, "client_secret": "wrong-secret-4711"})
    args = ["--discover"]
    if mode == "sync":
        discovered = _run(
            [*command(), "--config", str(write_json(tmp_path / "good.json", good)), *args], timeout=60
        )
        catalog = select(json.loads(discovered.stdout), ["opportunities"])
        args = ["--catalog", str(write_json(tmp_path / "catalog.json", catalog))]
    result = _run([*command(), "--config", str(config), *args], timeout=60)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1
    assert "HTTP 401 invalid_client" in errors[0]
    assert "check client_id and client_secret" in errors[0]
    assert "Traceback" not in result.stderr
    assert "wrong-secret-4711" not in result.stdout + result.stderr


def test_unreachable_base_url_fails_at_once_naming_the_host(tmp_path: Path) -> None:
    with socket.socket() as holder:  # bound, not listening: connections are refused
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        config = write_json(
            tmp_path / "config.json",
            {"base_url": f"http://127.0.0.1:{port}", "client_id": "i", "client_secret": "s", "lead_ids": [1]},
        )
        result = _run([*command(), "--config", str(config), "--discover"], timeout=60)
    assert result.returncode == 1
    assert f"cannot reach Marketo at http://127.0.0.1:{port}: connection refused" in result.stderr
    assert "retrying" not in result.stderr
    assert "Traceback" not in result.stderr
