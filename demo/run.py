"""`make demo`: Marketo -> PostgreSQL -> Marketo through real Meltano, then the results as a table.

A local Marketo (`marketo-sandbox`, a subprocess) and a throwaway PostgreSQL (scripts/local_postgres.py)
are started; Meltano runs the plugins of meltano.yml (its `sandbox` environment) with their addresses in
environment variables and its own state in a temporary directory. Everything is stopped in `finally`
blocks, so nothing is left running; logs and the results file stay in demo-output/.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from scripts.local_postgres import LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MELTANO = ROOT / ".venv-meltano" / "bin" / "meltano"
OUT = ROOT / "demo-output"
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"  # the sandbox environment's, in meltano.yml
SCHEMA = "marketo"

# The CRM side of the way back: snake_case columns, as a warehouse would have them. meltano.yml's
# stream maps give them Marketo's names. Two new opportunities (one with a name Marketo would refuse),
# five landed ones with a new stage, three roles (one for a lead Marketo does not have).
CRM_SQL = f"""
CREATE SCHEMA crm;
CREATE TABLE crm.opportunities AS
    SELECT "externalOpportunityId" AS external_opportunity_id, name, description, type,
           'Negotiation'::text AS stage, amount, "closeDate" AS close_date, "isClosed" AS is_closed,
           "isWon" AS is_won, "externalCompanyId" AS external_company_id, 0.25::numeric AS internal_margin
    FROM {SCHEMA}.opportunities WHERE amount IS NOT NULL ORDER BY "externalOpportunityId" LIMIT 5;
INSERT INTO crm.opportunities VALUES
    ('CRM-0001', 'Acme renewal 2027', NULL, 'Renewal', 'Proposal', 12500.00, '2027-03-31', false, false,
     'ACME', 0.3),
    ('CRM-0002', repeat('A name far too long for Marketo ', 10), NULL, 'New Business', 'Proposal', 99.00,
     '2027-06-30', false, false, NULL, 0.1);
CREATE TABLE crm.opportunity_roles (
    external_opportunity_id text, lead_id bigint, role text, is_primary boolean
);
INSERT INTO crm.opportunity_roles VALUES
    ('CRM-0001', 5, 'Decision Maker', true),
    ('CRM-0001', 7, 'Champion', false),
    ('CRM-0001', 999999, 'Buyer', false);
"""  # noqa: S608 (no outside input)


@contextmanager
def sandbox(workdir: Path) -> Iterator[str]:
    """A marketo-sandbox process on a free port; yields its base URL."""
    port_file = workdir / "port"
    process = subprocess.Popen(
        [
            str(BIN / "marketo-sandbox"),
            *("--port", "0", "--port-file", str(port_file)),
            *("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET),
            *("--leads", "300", "--opportunities", "200"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the sandbox did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Demo:
    def __init__(self, base_url: str, pg: LocalPostgres, workdir: Path) -> None:
        self.pg = pg
        self.results = OUT / "marketo-results.jsonl"
        self.env = {
            **os.environ,
            "MELTANO_ENVIRONMENT": "sandbox",
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "TAP_MARKETO_OPPS_BASE_URL": base_url,
            "TARGET_MARKETO_OPPS_BASE_URL": base_url,
            "TARGET_MARKETO_OPPS_RESULTS_PATH": str(self.results),
            "TAP_MARKETO_RESULTS_RESULTS_PATH": str(self.results),
            "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": SCHEMA,
            **pg.env("target-postgres"),
            **pg.env("tap-postgres"),
        }
        self.step = 0
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.rows: list[tuple[str, int]] = []

    def meltano_run(self, extractor: str, loader: str, title: str) -> None:
        self.step += 1
        log = OUT / f"{self.step}-{extractor}-to-{loader}.log"
        print(f"\n{self.step}. {title}\n   meltano run {extractor} {loader}")
        started = time.monotonic()
        with log.open("wb") as sink:
            done = subprocess.run(
                [str(MELTANO), "run", extractor, loader],
                cwd=ROOT,
                env=self.env,
                stdout=sink,
                stderr=sink,
                check=False,
            )
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"   failed (exit {done.returncode}); see {log.relative_to(ROOT)}")
        print(f"   done in {seconds:.0f} s (log: {log.relative_to(ROOT)})")

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg.conninfo, autocommit=True) as db:
            cursor = db.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def print_tables(self) -> None:
        tables = self.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1", SCHEMA
        )
        self.rows = []
        for (table,) in tables:
            count = self.sql(f'SELECT count(*) FROM {SCHEMA}."{table}"')[0][0]  # noqa: S608 (our own names)
            self.rows.append((table, count))
            print(f"   {SCHEMA}.{table:<26} {count:>6} rows")

    def run(self) -> None:
        self.meltano_run(
            "tap-marketo-opps", "target-postgres", "Marketo -> PostgreSQL (every opportunity and role)"
        )
        self.print_tables()
        opportunities, roles = self.batched("opportunities"), self.batched("opportunity_roles")

        self.sql(CRM_SQL)
        self.meltano_run(
            "tap-postgres",
            "target-marketo-opps",
            "PostgreSQL -> Marketo (crm.opportunities, crm.opportunity_roles)",
        )
        counts: collections.Counter[tuple[str, str]] = collections.Counter()
        for line in self.results.read_text().splitlines():
            row = json.loads(line)
            counts[(row["stream"], row["status"])] += 1
        for (stream, status), count in sorted(counts.items()):
            print(f"   {stream:<26} {status:<10} {count:>6}")

        self.meltano_run("tap-marketo-results", "target-postgres", "The results file -> PostgreSQL")
        failed = self.sql(
            f"SELECT stream, key::text, status, reason_codes, reason_messages FROM {SCHEMA}.marketo_results "  # noqa: S608
            "WHERE status NOT IN ('created', 'updated', 'deleted') ORDER BY stream, record"
        )
        print(f"   What failed, and why: SELECT * FROM {SCHEMA}.marketo_results WHERE status <> ...")  # noqa: S608
        for stream, key, status, codes, messages in failed:
            print(f"   {stream} {key}: {status} {codes}: {messages}")

        self.meltano_run(
            "tap-marketo-opps",
            "target-postgres",
            "Marketo -> PostgreSQL again (incremental, from Meltano's state)",
        )
        for table, before in (("opportunities", opportunities), ("opportunity_roles", roles)):
            after = self.batched(table)
            new = sum(1 for guid in after if guid not in before)
            again = sum(1 for guid, at in after.items() if guid in before and before[guid] != at)
            print(f"   {table}: {again} sent again (step 2 updated them), {new} new (step 2 created them)")
        self.counts = counts
        self.print_tables()

    def batched(self, table: str) -> dict[str, Any]:
        """marketoGUID -> when target-postgres last wrote the row."""
        return dict(self.sql(f'SELECT "marketoGUID", _sdc_batched_at FROM {SCHEMA}.{table}'))  # noqa: S608

    def summary(self) -> None:
        print("\nSummary")
        print("   PostgreSQL rows: " + ", ".join(f"{SCHEMA}.{t} {n:,}" for t, n in self.rows))
        outcomes = collections.Counter(status for (_, status), n in self.counts.items() for _ in range(n))
        print(
            "   Written to Marketo: " + ", ".join(f"{status} {n}" for status, n in sorted(outcomes.items()))
        )
        print("Where to look:")
        print(f"   {self.results.relative_to(ROOT)}  one line per record written to Marketo, with its reason")
        print(f"   {OUT.relative_to(ROOT)}/*.log            each meltano run")
        print(
            "   (PostgreSQL is gone again; `python -m scripts.local_postgres serve` starts one to try things)"
        )


def main() -> None:
    if not MELTANO.exists():
        raise SystemExit(f"{MELTANO} is missing: run `make demo` (it installs Meltano and the plugins)")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with sandbox(workdir) as base_url, LocalPostgres() as pg:
            print(f"marketo-sandbox at {base_url}; PostgreSQL {pg.bindir.parent.name} at {pg.host}:{pg.port}")
            demo = Demo(base_url, pg, workdir)
            demo.run()
        print("\nmarketo-sandbox and PostgreSQL stopped.")
    demo.summary()


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
