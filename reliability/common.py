"""What every trial needs: sandboxes that remember their tokens, CLI runs at DEBUG, output parsing."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from marketo_sandbox import Sandbox, SandboxConfig

BIN = Path(sys.executable).parent
TAP = str(BIN / "tap-marketo-opps")
TARGET = str(BIN / "target-marketo-opps")
CLIENT_ID = "reliability-client"
#: Random per run, and URL-safe, so a hit in any output is this run's secret and nothing else.
CLIENT_SECRET = f"rel-{secrets.token_hex(16)}"
#: The connectors' limiter stays on with a window too short to bind; sandboxes lift theirs.
FAST = {"max_calls_per_20s": 100, "max_concurrent_requests": 5, "rate_window_seconds": 0.02}
#: Written statuses: the record's requested end state holds in Marketo.
WRITTEN = frozenset({"created", "updated", "deleted"})


class TokenBook:
    """Every access token any sandbox of this run issued (revocation forgets them; this does not)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tokens: set[str] = set()

    def watch(self, sandbox: Sandbox) -> Sandbox:
        state = sandbox._state
        issue = state.issue_token

        def recording() -> tuple[str, int]:
            token, remaining = issue()
            with self._lock:
                self.tokens.add(token)
            return token, remaining

        state.issue_token = recording  # type: ignore[method-assign]
        return sandbox


TOKENS = TokenBook()


def start_sandbox(**overrides: Any) -> Sandbox:
    """A running in-process sandbox with this run's credentials and no rate limit of its own."""
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "rate_limit": None,
        **overrides,
    }
    return TOKENS.watch(Sandbox(SandboxConfig.small(**values))).start()


def connection(sandbox: Sandbox, **settings: Any) -> dict[str, Any]:
    return {**sandbox.connection_settings(), **FAST, **settings}


def debug_env() -> dict[str, str]:
    """Both connectors log at DEBUG (singer-sdk reads `<PLUGIN>_LOGLEVEL`), urllib3 included."""
    env = dict(os.environ)
    env["TAP_MARKETO_OPPS_LOGLEVEL"] = "DEBUG"
    env["TARGET_MARKETO_OPPS_LOGLEVEL"] = "DEBUG"
    return env


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


@dataclass
class Finished:
    returncode: int
    seconds: float
    stdout: Path
    stderr: Path

    def stderr_text(self) -> str:
        return self.stderr.read_text(encoding="utf-8", errors="replace")


def run_cli(
    argv: list[str],
    *,
    stdin: Path | None,
    stdout: Path,
    stderr: Path,
    timeout: float = 300,
    kill_when: Callable[[], bool] | None = None,
) -> Finished:
    """Run a connector at DEBUG; with `kill_when`, SIGKILL it as soon as that returns true."""
    started = time.monotonic()
    with (
        stdin.open("rb") if stdin else open(os.devnull, "rb") as given,
        stdout.open("wb") as out,
        stderr.open("wb") as err,
    ):
        process = subprocess.Popen(argv, stdin=given, stdout=out, stderr=err, env=debug_env())
        deadline = started + timeout
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
                break
            if kill_when is not None and kill_when():
                process.kill()
                break
            time.sleep(0.005)
        returncode = process.wait()
    return Finished(returncode, time.monotonic() - started, stdout, stderr)


def singer_lines(path: Path) -> list[dict[str, Any]]:
    """The whole JSON lines of a connector's stdout (a line cut by a kill is left out)."""
    out = []
    for line in path.read_bytes().split(b"\n"):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def results_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().split(b"\n"):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill; the next run removes it
    return rows


def same_number(left: Any, right: Any) -> bool:
    try:
        return Decimal(str(left)) == Decimal(str(right))
    except (InvalidOperation, ValueError):
        return False


def key_of(stream: str, record: dict[str, Any]) -> tuple[str, str]:
    """A record's identity for matching input to results lines and to the store."""
    if stream == "opportunity_roles":
        fields: tuple[str, ...] = ("externalOpportunityId", "leadId", "role")
    else:
        fields = ("externalOpportunityId",)
    return stream, json.dumps({f: record.get(f) for f in fields}, sort_keys=True)


def result_key(row: dict[str, Any]) -> tuple[str, str]:
    return str(row.get("stream")), json.dumps(row.get("key") or {}, sort_keys=True)
