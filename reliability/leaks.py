"""Secrets in output: every stdout, stderr and results file of the run, searched for the client
secret and for every access token any sandbox issued (the connectors ran at DEBUG)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .common import CLIENT_SECRET, TOKENS

#: Files the connectors wrote. Configs (which hold the secret by design) and inputs are not output.
OUTPUT_SUFFIXES = (".out", ".err", ".jsonl")


@dataclass
class LeakScan:
    files: int = 0
    bytes: int = 0
    debug_lines: int = 0
    tokens: int = 0
    hits: int = 0
    examples: list[str] = field(default_factory=list)


def scan(root: Path) -> LeakScan:
    needles = {"client_secret": CLIENT_SECRET}
    for token in TOKENS.tokens:
        needles[f"token {token[:8]}…"] = token.split(":")[0]  # the random part, however it is encoded
    result = LeakScan(tokens=len(TOKENS.tokens))
    for path in sorted(root.rglob("*")):
        if not path.is_file() or not path.name.endswith(OUTPUT_SUFFIXES) or path.name == "input.jsonl":
            continue
        data = path.read_bytes()
        result.files += 1
        result.bytes += len(data)
        if path.suffix == ".err":
            result.debug_lines += data.count(b"DEBUG")
        for label, needle in needles.items():
            found = data.count(needle.encode())
            if found:
                result.hits += found
                if len(result.examples) < 10:
                    result.examples.append(f"{label} x{found} in {path.relative_to(root)}")
    return result
