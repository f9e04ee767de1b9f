"""One benchmark figure per row, the table `make bench` prints and `bench/results/latest.json`.

A row is `{"name", "metric", "value", "unit", "goal", "met"}`: `goal` is text such as ">= 0.90"
(or null for a figure shown for context), `met` is whether `value` reaches it (null without a goal).
"""

from __future__ import annotations

import json
import operator
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
}


@dataclass(frozen=True)
class Row:
    name: str
    metric: str
    value: float
    unit: str
    goal: str | None = None
    met: bool | None = None

    @classmethod
    def measured(cls, name: str, metric: str, value: float, unit: str, goal: str | None = None) -> Row:
        """A row whose `met` is decided from `goal` ("<op> <number>", op one of >=, <=, ==)."""
        if goal is None:
            return cls(name, metric, value, unit)
        op, _, bound = goal.partition(" ")
        return cls(name, metric, value, unit, goal, _COMPARISONS[op](value, float(bound)))


def machine() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def write(path: Path, rows: Iterable[Row], *, extra: dict[str, Any] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine(), **(extra or {}), "rows": [asdict(row) for row in rows]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.2f}"


def table(rows: Iterable[Row]) -> str:
    """The rows as a Markdown table: the printed table and the README's are the same text."""
    lines = ["| name | metric | value | unit | goal | met |", "|---|---|---:|---|---|---|"]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.name} | {row.metric} | {_number(row.value)} | {row.unit} | {row.goal or ''} | {met} |"
        )
    return "\n".join(lines)
