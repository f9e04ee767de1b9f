"""Wall time, CPU time and peak RSS of one command, with no figure carried over from this process.

Linux keeps a process's peak RSS across fork and exec (`ru_maxrss` starts from the parent's peak),
so a connector started straight from a benchmark that holds 300 MB would report at least 300 MB.
The command is therefore started by a tiny launcher (`python -S`, a few MB): the launcher forks the
command from its own small address space and reports the `wait4` figures of that grandchild.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as out:
    json.dump({
        "exit": os.waitstatus_to_exitcode(status),
        "wall": time.monotonic() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_kb": usage.ru_maxrss,
    }, out)
"""


@dataclass(frozen=True)
class Usage:
    exit_code: int
    wall: float
    cpu: float
    peak_rss_mb: float


def run(
    argv: list[str],
    *,
    stdin: Path | None = None,
    stdout: Path | None = None,
    stderr: Path | None = None,
    env: dict[str, str] | None = None,
) -> Usage:
    """Runs `argv` to its end and returns its usage; the caller decides what a non-zero exit means."""
    with contextlib.ExitStack() as files:
        given = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        out = files.enter_context(stdout.open("wb")) if stdout else subprocess.DEVNULL
        err = files.enter_context(stderr.open("wb")) if stderr else subprocess.DEVNULL
        report = Path(files.enter_context(tempfile.TemporaryDirectory(prefix="measure-"))) / "usage.json"
        launcher = subprocess.run(
            [sys.executable, "-S", "-c", _LAUNCHER, str(report), *argv],
            stdin=given,
            stdout=out,
            stderr=err,
            env=env,
            check=False,
        )
        if launcher.returncode != 0 or not report.exists():
            raise RuntimeError(f"the launcher for {argv[0]} failed (exit {launcher.returncode})")
        found = json.loads(report.read_text())
    return Usage(found["exit"], found["wall"], found["cpu"], found["peak_rss_kb"] / 1024)
