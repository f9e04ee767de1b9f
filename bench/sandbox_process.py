"""A `marketo-sandbox` process on a free port, for the benchmarks (each section sets its limits)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

BIN = Path(sys.executable).parent
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret"
#: Marketo's limits, the daily quota included, all lifted: the connectors' own cost shows.
NO_LIMITS = ("--rate-limit", "off", "--concurrency-limit", "off", "--daily-quota", "off")


class SandboxProcess:
    """The sandbox as its own process (its CPU is not the connectors'), stopped by `stop`."""

    def __init__(self, workdir: Path, *, leads: int, opportunities: int, options: tuple[str, ...]) -> None:
        port_file = workdir / f"sandbox-{time.monotonic_ns()}.port"
        self._process = subprocess.Popen(
            [
                *(str(BIN / "marketo-sandbox"), "--port", "0", "--port-file", str(port_file)),
                *("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET),
                *("--leads", str(leads), "--opportunities", str(opportunities)),
                *options,
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("the sandbox did not start")
            time.sleep(0.1)
        self.base_url = f"http://127.0.0.1:{port_file.read_text().strip()}"

    def get(self, name: str) -> Any:
        return requests.get(f"{self.base_url}/_sandbox/{name}", timeout=60).json()

    def calls_by_endpoint(self) -> dict[str, int]:
        return {key: int(count) for key, count in self.get("stats")["calls_by_endpoint"].items()}

    def reset(self) -> None:
        requests.post(f"{self.base_url}/_sandbox/reset-stats", timeout=60).raise_for_status()

    def cpu_seconds(self) -> float:
        """User + system CPU of the sandbox process so far (it serves every call of the run)."""
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
