"""Helpers to run the tap in-process and read what it wrote (used by the tests and benchmarks)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .tap import TapMarketoOpps


@dataclass
class TapRun:
    """The Singer messages of one in-process run."""

    tap: TapMarketoOpps
    stdout: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        # Exact numbers: a currency "1604.47" must come back as Decimal("1604.47").
        self.messages = [json.loads(line, parse_float=Decimal) for line in self.stdout.splitlines() if line]

    def records(self, stream: str) -> list[dict[str, Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream]

    def guids(self, stream: str) -> set[str]:
        return {r["marketoGUID"] for r in self.records(stream)}

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def last_state(self) -> dict[str, Any]:
        states = self.states
        return states[-1] if states else {}

    def streams(self, message_type: str) -> list[str]:
        return [m["stream"] for m in self.messages if m["type"] == message_type]


def run_tap(
    config: Mapping[str, Any],
    *,
    catalog: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
) -> TapRun:
    """Sync in-process with stdout captured. An exception is kept in `error`, not raised."""
    buffer = io.StringIO()
    tap = TapMarketoOpps(
        config=dict(config),
        catalog=copy.deepcopy(dict(catalog)) if catalog is not None else None,
        state=copy.deepcopy(dict(state)) if state is not None else None,
        parse_env_config=False,
    )
    error: BaseException | None = None
    with contextlib.redirect_stdout(buffer):
        try:
            tap.sync_all()
        except Exception as exc:
            error = exc
    return TapRun(tap=tap, stdout=buffer.getvalue(), error=error)


def discover(config: Mapping[str, Any]) -> dict[str, Any]:
    """The catalog `--discover` would print."""
    return TapMarketoOpps(config=dict(config), parse_env_config=False, setup_mapper=False).catalog_dict


def select(
    catalog: Mapping[str, Any],
    streams: Iterable[str],
    *,
    deselect_properties: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """A copy of `catalog` with exactly `streams` selected (and some properties deselected)."""
    wanted = set(streams)
    drop = {name: set(props) for name, props in (deselect_properties or {}).items()}
    result = copy.deepcopy(dict(catalog))
    for entry in result["streams"]:
        name = entry["tap_stream_id"]
        for item in entry["metadata"]:
            breadcrumb = tuple(item["breadcrumb"])
            if not breadcrumb:
                item["metadata"]["selected"] = name in wanted
            elif len(breadcrumb) == 2 and breadcrumb[1] in drop.get(name, ()):
                item["metadata"]["selected"] = False
    return result
