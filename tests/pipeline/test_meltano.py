"""Real pipelines: Meltano 4.4 runs the plugins of meltano.yml between a sandbox and a real PostgreSQL.

Marketo -> tap-marketo-opps -> target-postgres; a CRM table -> tap-postgres -> target-marketo-opps
(through the stream maps of meltano.yml); the target's results file -> tap-marketo-results ->
target-postgres. Every run is `meltano run` in the repository's own project (so meltano.yml is what
is tested), with the sandbox's and the database's addresses in environment variables and Meltano's
system database (its state) in a temporary directory. Needs `make meltano` (done by `make test`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from marketo_api import MarketoClient, MarketoObject, MarketoSettings
from marketo_sandbox import Fault, Sandbox, SandboxConfig
from scripts.local_postgres import LocalPostgres
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
LEADS = range(1, 251)  # the sandbox environment's lead_id_range in meltano.yml
TO_POSTGRES = ("tap-marketo-opps", "target-postgres")
STATE_ID = "sandbox:tap-marketo-opps-to-target-postgres"


@pytest.fixture(scope="module")
def postgres() -> Iterator[LocalPostgres]:
    if not MELTANO.exists():
        pytest.fail(
            f"{MELTANO} is missing: run `make meltano` (make test does) to install Meltano and its plugins"
        )
    with LocalPostgres() as server:
        yield server


def sandbox_config(**overrides: Any) -> SandboxConfig:
    values: dict[str, Any] = {
        "client_id": "demo-client",  # the credentials of meltano.yml's sandbox environment
        "client_secret": "demo-secret",
        "leads": 300,
        "opportunities": 120,
        # Marketo's 20 s window: a `kind: decimal` setting set through the environment crashes Meltano
        # 4.4.1 (Decimal is not JSON serializable), so the plugins keep their default window.
    }
    values.update(overrides)
    return SandboxConfig(**values)


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(sandbox_config()) as sandbox:
        yield sandbox


@dataclass
class Meltano:
    """`meltano` in the repository's project, pointed at one sandbox, one database schema, one state DB."""

    env: dict[str, str]
    state_db: Path
    results: Path

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(MELTANO), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and done.returncode != 0:
            pytest.fail(f"meltano {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}")
        return done

    def start(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as sink:
            return subprocess.Popen(
                [str(MELTANO), *args],
                cwd=ROOT,
                env=self.env,
                stdout=sink,
                stderr=sink,
                start_new_session=True,
            )

    def state(self, state_id: str = STATE_ID) -> dict[str, Any] | None:
        """The completed state Meltano holds for a pipeline (its system database)."""
        with sqlite3.connect(self.state_db) as db:
            row = db.execute("SELECT completed_state FROM state WHERE state_id = ?", (state_id,)).fetchone()
        return json.loads(row[0])["singer_state"] if row and row[0] else None


@pytest.fixture
def schema(postgres: LocalPostgres) -> Iterator[str]:
    """A fresh target schema for the test; dropped afterwards (the crm source schema too)."""
    name = f"marketo_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    yield name
    with psycopg.connect(postgres.conninfo, autocommit=True) as db:
        db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        db.execute("DROP SCHEMA IF EXISTS crm CASCADE")


@pytest.fixture
def meltano(tmp_path: Path, postgres: LocalPostgres, schema: str, sb: Sandbox) -> Meltano:
    results = tmp_path / "marketo-results.jsonl"
    env = {
        **os.environ,
        "MELTANO_ENVIRONMENT": "sandbox",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "TAP_MARKETO_OPPS_BASE_URL": sb.base_url,
        "TARGET_MARKETO_OPPS_BASE_URL": sb.base_url,
        "TARGET_MARKETO_OPPS_RESULTS_PATH": str(results),
        "TAP_MARKETO_RESULTS_RESULTS_PATH": str(results),
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
        **postgres.env("target-postgres"),
        **postgres.env("tap-postgres"),
    }
    return Meltano(env=env, state_db=tmp_path / "meltano.db", results=results)


def query(postgres: LocalPostgres, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(postgres.conninfo) as db:
        return db.execute(sql, params).fetchall()


def column_types(postgres: LocalPostgres, schema: str, table: str) -> dict[str, str]:
    rows = query(
        postgres,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        schema,
        table,
    )
    return dict(rows)


def expected(sb: Sandbox) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The opportunities and roles the sandbox environment's lead_id_range reaches, by marketoGUID."""
    roles = {r["marketoGUID"]: r for r in sb.store.roles() if r["leadId"] in LEADS}
    named = {r["externalOpportunityId"] for r in roles.values()}
    opportunities = {
        o["marketoGUID"]: o for o in sb.store.opportunities() if o["externalOpportunityId"] in named
    }
    return opportunities, roles


def utc(text: str) -> dt.datetime:
    """A Marketo datetime as target-postgres stores it: `timestamp without time zone`, in UTC."""
    return (
        dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        .astimezone(dt.timezone.utc)
        .replace(tzinfo=None)
    )


def landed_opportunities(postgres: LocalPostgres, schema: str) -> dict[str, tuple[Any, ...]]:
    rows = query(
        postgres,
        f'SELECT "marketoGUID", amount, "closeDate", "isWon", stage, "updatedAt", _sdc_batched_at '
        f'FROM "{schema}".opportunities',
    )
    return {row[0]: row[1:] for row in rows}


def landed_roles(postgres: LocalPostgres, schema: str) -> dict[str, tuple[Any, ...]]:
    rows = query(
        postgres,
        f'SELECT "marketoGUID", "leadId", role, "isPrimary", "updatedAt", _sdc_batched_at '
        f'FROM "{schema}".opportunity_roles',
    )
    return {row[0]: row[1:] for row in rows}


def assert_tables_match_the_store(postgres: LocalPostgres, schema: str, sb: Sandbox) -> None:
    opportunities, roles = expected(sb)
    landed = landed_opportunities(postgres, schema)
    assert set(landed) == set(opportunities)
    for guid, (amount, close_date, is_won, stage, updated_at, _) in landed.items():
        stored = opportunities[guid]
        assert amount == (Decimal(stored["amount"]) if "amount" in stored else None), guid
        assert close_date == (dt.date.fromisoformat(stored["closeDate"]) if "closeDate" in stored else None)
        assert is_won == stored.get("isWon")
        assert stage == stored.get("stage")
        assert updated_at == utc(stored["updatedAt"])
    landed_r = landed_roles(postgres, schema)
    assert set(landed_r) == set(roles)
    for guid, (lead_id, role, is_primary, updated_at, _) in landed_r.items():
        stored = roles[guid]
        assert (lead_id, role, is_primary, updated_at) == (
            stored["leadId"],
            stored["role"],
            stored.get("isPrimary"),
            utc(stored["updatedAt"]),
        )


def update_opportunities(sb: Sandbox, changes: list[dict[str, Any]]) -> None:
    settings = MarketoSettings.from_config(sb.connection_settings())
    with MarketoClient(settings) as client:
        results = client.sync(MarketoObject.OPPORTUNITY, changes, action="updateOnly")
    assert all(r.status == "updated" for r in results), results


# ---- Marketo -> PostgreSQL ---------------------------------------------------------------------


def test_marketo_lands_in_postgres_with_its_types_and_later_runs_send_only_changes(
    meltano: Meltano, postgres: LocalPostgres, schema: str, sb: Sandbox
) -> None:
    meltano.run("run", *TO_POSTGRES)
    opportunity_types = column_types(postgres, schema, "opportunities")
    assert {name: opportunity_types[name] for name in ("amount", "closeDate", "isWon", "updatedAt")} == {
        "amount": "numeric",
        "closeDate": "date",
        "isWon": "boolean",
        "updatedAt": "timestamp without time zone",
    }
    role_types = column_types(postgres, schema, "opportunity_roles")
    assert (role_types["leadId"], role_types["isPrimary"], role_types["createdAt"]) == (
        "bigint",
        "boolean",
        "timestamp without time zone",
    )
    assert_tables_match_the_store(postgres, schema, sb)
    fields = query(postgres, f'SELECT count(*) FROM "{schema}".opportunity_fields')[0][0]
    assert fields == len(sb.store.schema("opportunities").fields)
    first_state = meltano.state()
    assert first_state is not None
    before = landed_opportunities(postgres, schema), landed_roles(postgres, schema)

    # Nothing changed: the second run sends no record (no row is written again).
    meltano.run("run", *TO_POSTGRES)
    assert (landed_opportunities(postgres, schema), landed_roles(postgres, schema)) == before
    assert meltano.state() == first_state

    # One opportunity changes in Marketo: the third run writes exactly that row.
    changed = min(before[0])
    (ext,) = [o["externalOpportunityId"] for o in sb.store.opportunities() if o["marketoGUID"] == changed]
    update_opportunities(sb, [{"externalOpportunityId": ext, "stage": "Closed Won", "amount": "1234.56"}])
    meltano.run("run", *TO_POSTGRES)
    after = landed_opportunities(postgres, schema)
    rewritten = {guid for guid, row in after.items() if row[-1] != before[0][guid][-1]}
    assert rewritten == {changed}
    assert after[changed][:4:3] == (Decimal("1234.56"), "Closed Won")
    assert landed_roles(postgres, schema) == before[1]
    assert_tables_match_the_store(postgres, schema, sb)


def test_a_killed_run_is_resumed_from_meltanos_state(
    meltano: Meltano, postgres: LocalPostgres, schema: str, sb: Sandbox, tmp_path: Path
) -> None:
    meltano.run("run", *TO_POSTGRES)
    saved = meltano.state()
    landed = landed_opportunities(postgres, schema)
    changed = sorted(landed)[:2]
    by_guid = {o["marketoGUID"]: o for o in sb.store.opportunities()}
    update_opportunities(
        sb, [{"externalOpportunityId": by_guid[g]["externalOpportunityId"], "stage": "Kill"} for g in changed]
    )

    # The next run hangs on a slow Marketo answer (after discovery and its first key batch query) and is
    # killed, Meltano and both plugins at once.
    sb.reset_stats()
    sb.configure(faults=[Fault(kind="slow", calls=[4], seconds=120)])
    process = meltano.start("run", *TO_POSTGRES, log=tmp_path / "killed.log")
    deadline = time.monotonic() + 120
    while sb.stats()["rest_calls"] < 4:
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the slow call"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    sb.configure(faults=[])
    assert meltano.state() == saved  # nothing the loader had not confirmed

    # Meltano still counts the killed job as running for 5 minutes: a plain rerun is refused.
    refused = meltano.run("run", *TO_POSTGRES, check=False)
    assert refused.returncode != 0
    assert "already running" in refused.stderr
    meltano.run("run", "--force", *TO_POSTGRES)
    after = landed_opportunities(postgres, schema)
    rewritten = {guid for guid, row in after.items() if row[-1] != landed[guid][-1]}
    assert rewritten == set(changed)  # resumed from the saved bookmark: only the changes came again
    assert_tables_match_the_store(postgres, schema, sb)


# ---- PostgreSQL -> Marketo, and the results back --------------------------------------------------

CRM_TABLES = """
CREATE SCHEMA crm;
CREATE TABLE crm.opportunities (
    external_opportunity_id text PRIMARY KEY,
    name text NOT NULL,
    description text,
    type text,
    stage text,
    amount numeric(14, 2),
    close_date date,
    is_closed boolean,
    is_won boolean,
    external_company_id text,
    internal_margin numeric  -- not for Marketo: the stream map drops it
);
CREATE TABLE crm.opportunity_roles (
    external_opportunity_id text,
    lead_id bigint,
    role text,
    is_primary boolean,
    PRIMARY KEY (external_opportunity_id, lead_id, role)
);
"""


def test_a_crm_table_is_written_to_marketo_and_its_results_land_as_a_table(
    meltano: Meltano, postgres: LocalPostgres, schema: str, sb: Sandbox
) -> None:
    existing = sb.store.opportunities()[0]["externalOpportunityId"]
    opportunities = [
        (
            "CRM-0001",
            "Acme renewal",
            "Renewal",
            "Proposal",
            Decimal("1234.50"),
            dt.date(2027, 3, 31),
            False,
            False,
        ),
        (
            "CRM-0002",
            "Globex expansion",
            "New Business",
            "Closed Won",
            Decimal("99.99"),
            dt.date(2026, 12, 1),
            True,
            True,
        ),
        (
            existing,
            "Renamed in the CRM",
            "Renewal",
            "Negotiation",
            Decimal("5000.00"),
            dt.date(2027, 1, 15),
            False,
            False,
        ),
        (
            "CRM-0003",
            "x" * 300,
            "New Business",
            "Proposal",
            Decimal("1.00"),
            dt.date(2027, 6, 30),
            False,
            False,
        ),
    ]
    roles = [
        ("CRM-0001", 5, "Decision Maker", True),
        ("CRM-0002", 7, "Champion", False),
        ("CRM-0002", 999999, "Buyer", False),
    ]
    with psycopg.connect(postgres.conninfo, autocommit=True) as db:
        db.execute(CRM_TABLES)
        with db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO crm.opportunities (external_opportunity_id, name, type, stage, amount, "
                "close_date, is_closed, is_won, internal_margin) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0.42)",
                opportunities,
            )
            cursor.executemany("INSERT INTO crm.opportunity_roles VALUES (%s, %s, %s, %s)", roles)

    meltano.run("run", "tap-postgres", "target-marketo-opps")
    for ext, name, kind, stage, amount, close_date, closed, won in opportunities[:3]:
        stored = sb.store.opportunity(ext)
        assert stored is not None, ext
        assert (stored["name"], stored["type"], stored["stage"], Decimal(stored["amount"])) == (
            name,
            kind,
            stage,
            amount,
        )
        assert (stored["closeDate"], stored["isClosed"], stored["isWon"]) == (
            close_date.isoformat(),
            closed,
            won,
        )
        assert not {"internal_margin", "internalMargin"} & set(stored)
    assert sb.store.opportunity("CRM-0003") is None  # 300 characters: rejected by the target
    for ext, lead, role, primary in roles[:2]:
        stored_role = sb.store.role(ext, lead, role)
        assert stored_role is not None
        assert stored_role.get("isPrimary", False) is primary
    assert sb.store.role("CRM-0002", 999999, "Buyer") is None  # no such lead in Marketo

    # The results file, loaded back: a user can SELECT what failed and why.
    meltano.run("run", "tap-marketo-results", "target-postgres")
    rows = query(
        postgres,
        f"SELECT stream, status, key->>'externalOpportunityId', reason_codes, reason_messages "
        f'FROM "{schema}".marketo_results',
    )
    lines = [json.loads(line) for line in meltano.results.read_text().splitlines()]
    assert len(rows) == len(lines) == len(opportunities) + len(roles)
    statuses = {(stream, key, status) for stream, status, key, _, _ in rows}
    assert statuses == {
        ("opportunities", "CRM-0001", "created"),
        ("opportunities", "CRM-0002", "created"),
        ("opportunities", existing, "updated"),
        ("opportunities", "CRM-0003", "rejected"),
        ("opportunity_roles", "CRM-0001", "created"),
        ("opportunity_roles", "CRM-0002", "created"),
        ("opportunity_roles", "CRM-0002", "skipped"),
    }
    failed = {
        (key, codes): messages
        for _, status, key, codes, messages in rows
        if status in ("rejected", "skipped")
    }
    assert set(failed) == {("CRM-0003", "too_long"), ("CRM-0002", "1004")}
    assert "255" in failed[("CRM-0003", "too_long")]
    types = column_types(postgres, schema, "marketo_results")
    assert (types["key"], types["reasons"], types["record"], types["run_started_at"]) == (
        "jsonb",
        "ARRAY",
        "bigint",
        "timestamp without time zone",
    )

    # Loading the same file again adds nothing: rows are keyed by (run, record).
    meltano.run("run", "tap-marketo-results", "target-postgres")
    assert query(postgres, f'SELECT count(*) FROM "{schema}".marketo_results')[0][0] == len(lines)
