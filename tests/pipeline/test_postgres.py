"""The throwaway PostgreSQL of the pipeline tests and the demo: unprivileged, loopback only, always gone."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from scripts.local_postgres import UNPRIVILEGED_USER, LocalPostgres
from tests.support.paths import ROOT


def gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_the_server_listens_on_loopback_as_an_unprivileged_user_and_is_removed_after() -> None:
    with LocalPostgres() as pg:
        pid, directory = pg.pid, pg.directory
        assert pid is not None
        assert directory is not None
        with psycopg.connect(pg.conninfo) as db:
            assert db.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert db.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
        if os.geteuid() == 0:
            assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam(UNPRIVILEGED_USER).pw_uid
        else:
            assert os.stat(f"/proc/{pid}").st_uid == os.geteuid()
        with pytest.raises(psycopg.OperationalError):  # the password is required
            psycopg.connect(f"host=127.0.0.1 port={pg.port} user=postgres password=wrong dbname=postgres")
    assert gone(pid)
    assert not directory.exists()


def test_a_killed_owner_leaves_no_server_running() -> None:
    """SIGKILL gives no chance to clean up: the server stops by itself when its starter dies."""
    script = (
        "import os, signal\n"
        "from scripts.local_postgres import LocalPostgres\n"
        "pg = LocalPostgres().start()\n"
        "print(pg.pid, pg.directory, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == -9, done.stderr
    pid, directory = done.stdout.split()
    assert gone(int(pid))
    assert Path(directory).exists()  # nobody could remove it
    with LocalPostgres():  # the next server removes what a killed one left
        assert not Path(directory).exists()
