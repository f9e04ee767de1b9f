"""target-marketo-opps as a command: its executable, its config file, a run, its results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

EXECUTABLE = str(Path(sys.executable).parent / "target-marketo-opps")


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def run_cli(config: Path, input_path: Path, stdout: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    with input_path.open("rb") as source, stdout.open("wb") as out:
        return subprocess.run(
            [EXECUTABLE, "--config", str(config)],
            stdin=source,
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
            text=True,
            timeout=120,
            **kwargs,
        )


def results_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
