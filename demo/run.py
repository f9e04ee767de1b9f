"""Start a sandbox, read it with the tap, write a sample back with the target, print the counts.

No credentials, nothing left running: the sandbox is stopped in a `finally`.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLE = ROOT / "tests" / "data" / "target" / "sample.singer"
OUT = ROOT / "demo-output"
CLIENT_ID, CLIENT_SECRET = "demo-client", "demo-secret"


def start_sandbox(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = workdir / "port"
    process = subprocess.Popen(
        [
            str(BIN / "marketo-sandbox"),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--leads",
            "300",
            "--opportunities",
            "200",
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the sandbox did not start")
        time.sleep(0.1)
    return process, f"http://127.0.0.1:{port_file.read_text().strip()}"


def write_config(path: Path, config: dict[str, object]) -> Path:
    path.write_text(json.dumps(config, indent=2))
    return path


def run_tap(base_url: str, workdir: Path) -> Path:
    config = write_config(
        workdir / "tap.json",
        {
            "base_url": base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "lead_id_range": {"start": 1, "end": 300},
        },
    )
    output = OUT / "tap-output.singer"
    log = OUT / "tap.log"
    with output.open("wb") as sink, log.open("wb") as errors:
        subprocess.run(
            [str(BIN / "tap-marketo-opps"), "--config", str(config)], stdout=sink, stderr=errors, check=True
        )
    counts: collections.Counter[str] = collections.Counter()
    with output.open() as lines:
        for line in lines:
            message = json.loads(line)
            if message.get("type") == "RECORD":
                counts[message["stream"]] += 1
    print("\ntap-marketo-opps read from the sandbox:")
    for stream, count in sorted(counts.items()):
        print(f"  {stream:<26} {count:>6} records")
    print(f"  {last_line_with(log, 'Marketo calls:')}")
    print(f"  (Singer output: {output.relative_to(ROOT)}; log: {log.relative_to(ROOT)})")
    return output


def run_target(base_url: str, workdir: Path) -> None:
    results = OUT / "target-results.jsonl"
    results.unlink(missing_ok=True)  # the target appends; the demo shows one run
    config = write_config(
        workdir / "target.json",
        {
            "base_url": base_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "results_path": str(results),
            "max_rejections": 1000,
        },
    )
    log = OUT / "target.log"
    with SAMPLE.open("rb") as source, log.open("wb") as errors:
        completed = subprocess.run(
            [str(BIN / "target-marketo-opps"), "--config", str(config)],
            stdin=source,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            check=False,
        )
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    with results.open() as lines:
        for line in lines:
            row = json.loads(line)
            counts[(row["stream"], row["status"])] += 1
    print(f"\ntarget-marketo-opps wrote {SAMPLE.relative_to(ROOT)} into the sandbox:")
    for (stream, status), count in sorted(counts.items()):
        print(f"  {stream:<26} {status:<10} {count:>6}")
    for line in log.read_text().splitlines():
        if "| Reason " in line:
            print("  reason " + line.split("| Reason ", 1)[1].split("; example keys")[0])
    print(f"  (one line per input record: {results.relative_to(ROOT)}; log: {log.relative_to(ROOT)}; ")
    print(f"   exit code {completed.returncode})")


def last_line_with(log: Path, marker: str) -> str:
    lines = [line for line in log.read_text().splitlines() if marker in line]
    return marker + lines[-1].split(marker, 1)[1] if lines else f"({marker} not logged)"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        sandbox, base_url = start_sandbox(workdir)
        print(f"marketo-sandbox running at {base_url}")
        try:
            run_tap(base_url, workdir)
            run_target(base_url, workdir)
        finally:
            sandbox.send_signal(signal.SIGTERM)
            try:
                sandbox.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sandbox.kill()
            print("\nmarketo-sandbox stopped.")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
