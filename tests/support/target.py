"""Helpers shared by the target's tests (no tests in here)."""

from __future__ import annotations

import collections
import io
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketo_api import MarketoClient, MarketoSettings
from marketo_sandbox import Sandbox
from target_marketo_opps.target import TargetMarketoOpps
from tests.support import paths


class FastRetryClient(MarketoClient):
    """Retries as the real client does, minus its seconds-long backoff (tests inject the faults)."""

    def __init__(self, settings: MarketoSettings) -> None:
        super().__init__(settings, sleep=lambda seconds: time.sleep(min(seconds, 0.01)))


class FastRetryTarget(TargetMarketoOpps):
    client_class = FastRetryClient
    transient_retry_delays = (0.0, 0.0, 0.0)


DATA = paths.DATA / "target"
SAMPLE = DATA / "sample.singer"
VOLATILE = ("marketoGUID", "createdAt", "updatedAt")

OPP_PROPERTIES: dict[str, Any] = {
    "externalOpportunityId": {"type": ["string", "null"]},
    "marketoGUID": {"type": ["string", "null"]},
    "name": {"type": ["string", "null"]},
    "description": {"type": ["string", "null"]},
    "stage": {"type": ["string", "null"]},
    "amount": {"type": ["number", "null"]},
    "quantity": {"type": ["number", "null"]},
    "probability": {"type": ["integer", "null"]},
    "closeDate": {"type": ["string", "null"], "format": "date"},
    "externalCreatedDate": {"type": ["string", "null"], "format": "date-time"},
    "isWon": {"type": ["boolean", "null"]},
    "createdAt": {"type": ["string", "null"], "format": "date-time"},
    "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
}
ROLE_PROPERTIES: dict[str, Any] = {
    "externalOpportunityId": {"type": ["string", "null"]},
    "leadId": {"type": ["integer", "null"]},
    "role": {"type": ["string", "null"]},
    "marketoGUID": {"type": ["string", "null"]},
    "isPrimary": {"type": ["boolean", "null"]},
    "externalCreatedDate": {"type": ["string", "null"], "format": "date-time"},
    "_sdc_deleted_at": {"type": ["string", "null"], "format": "date-time"},
}


def schema(stream: str, properties: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "SCHEMA",
        "stream": stream,
        "schema": {"type": "object", "properties": properties},
        "key_properties": list(keys),
    }


def opp_schema(stream: str = "opportunities") -> dict[str, Any]:
    return schema(stream, OPP_PROPERTIES, ["externalOpportunityId"])


def role_schema(stream: str = "opportunity_roles") -> dict[str, Any]:
    return schema(stream, ROLE_PROPERTIES, ["externalOpportunityId", "leadId", "role"])


def record(stream: str, rec: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": stream, "record": rec}


def opp(eid: str, **fields: Any) -> dict[str, Any]:
    return record("opportunities", {"externalOpportunityId": eid, "name": f"Opportunity {eid}", **fields})


def role(eid: str, lead: int, name: str = "Champion", **fields: Any) -> dict[str, Any]:
    return record("opportunity_roles", {"externalOpportunityId": eid, "leadId": lead, "role": name, **fields})


def state(value: Any) -> dict[str, Any]:
    return {"type": "STATE", "value": value}


def sdk_style(count: int, roles_each: int = 3, prefix: str = "P") -> list[dict[str, Any]]:
    """Children before parents, as singer-sdk taps emit them, with STATE every few parents."""
    messages: list[dict[str, Any]] = []
    for n in range(1, count + 1):
        messages.append(role_schema())
        messages += [role(f"{prefix}-{n}", 1 + (n * 5 + i) % 60, f"Role {i}") for i in range(roles_each)]
        messages += [opp_schema(), opp(f"{prefix}-{n}", amount=n * 10)]
        if n % 4 == 0:
            messages.append(state({"parents": n}))
    return messages


def deleted(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "record": {**message["record"], "_sdc_deleted_at": "2026-11-01T00:00:00Z"}}


def singer_text(messages: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(m) + "\n" for m in messages)


class StateProbe(io.StringIO):
    """Captures STATE lines and, at the moment each is written, which records have a result line."""

    def __init__(self, results_path: Path | None, run_id: str = "") -> None:
        super().__init__()
        self.results_path = results_path
        self.run_id = run_id
        self.emitted: list[tuple[Any, set[int]]] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                done = set()
                if self.results_path is not None:
                    done = {row["record"] for row in run_lines(self.results_path, self.run_id)}
                self.emitted.append((json.loads(line), done))
        return super().write(text)


@dataclass
class Run:
    target: TargetMarketoOpps
    results_path: Path
    states: list[Any]
    state_snapshots: list[tuple[Any, set[int]]]
    error: BaseException | None
    results: list[dict[str, Any]] = field(default_factory=list)

    def by_record(self) -> dict[int, dict[str, Any]]:
        return {row["record"]: row for row in self.results}

    def statuses(self) -> collections.Counter[str]:
        return collections.Counter(row["status"] for row in self.results)

    def status_of(self, record_number: int) -> str:
        return str(self.by_record()[record_number]["status"])

    def reason_codes(self, record_number: int) -> list[str]:
        return [r["code"] for r in self.by_record()[record_number]["reasons"]]


def target_config(sb: Sandbox, tmp_path: Path, **settings: Any) -> dict[str, Any]:
    return {
        **sb.connection_settings(),
        "results_path": str(tmp_path / f"results-{uuid.uuid4().hex[:8]}.jsonl"),
        "max_rejections": None,
        **settings,
    }


def run_target(
    config: dict[str, Any],
    messages: Iterable[dict[str, Any]] | str,
    *,
    target_class: type[TargetMarketoOpps] = TargetMarketoOpps,
    raise_errors: bool = True,
) -> Run:
    """Run the target in-process on `messages`; STATE lines are captured from stdout."""
    text = messages if isinstance(messages, str) else singer_text(messages)
    results_path = Path(config["results_path"])
    target = target_class(config=config)
    probe = StateProbe(results_path, target.results.run_id)
    error: BaseException | None = None
    with redirect_stdout(probe):
        try:
            target.listen(file_input=io.StringIO(text))
        except Exception as exc:
            if raise_errors:
                raise
            error = exc
    run = Run(
        target=target,
        results_path=results_path,
        states=[s for s, _ in probe.emitted],
        state_snapshots=probe.emitted,
        error=error,
    )
    run.results = run_lines(results_path, target.results.run_id)
    return run


def run_lines(results_path: Path, run_id: str) -> list[dict[str, Any]]:
    """The results file's lines written by one run (the file also keeps earlier runs' lines)."""
    if not results_path.exists():
        return []
    with results_path.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return [row for row in rows if row["run"] == run_id]


def store_snapshot(sb: Sandbox) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Opportunities and roles without the fields a rerun legitimately changes."""

    def strip(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted(tuple(sorted((k, v) for k, v in row.items() if k not in VOLATILE)) for row in rows)

    return strip(sb.store.opportunities()), strip(sb.store.roles())
