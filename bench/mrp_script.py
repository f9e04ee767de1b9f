"""The script a user would write with marketorestpython (0.5.25), for `bench/versus.py`.

Run as its own process, so that its wall time, CPU time and peak RSS are measured from outside
exactly like the tap's and the target's:

    python bench/mrp_script.py read  CONFIG CATALOG START END OUT.jsonl SUMMARY.json
    python bench/mrp_script.py write CONFIG SINGER_FILE OUT.jsonl SUMMARY.json

`read` does what `lead_id_range` does: roles by `leadId`, 300 lead ids per query, then each
opportunity those roles name, 300 `externalOpportunityId`s per query, asking for the fields the
tap's catalog selects (a user lists them; no describe call). `write` sends the opportunities and
roles of a Singer file (the tap's output) with `create_update_opportunities` and
`create_update_opportunities_roles`, 300 per call, opportunities first (a role needs its
opportunity), leaving out the fields the describes say cannot be written.

CONFIG is the tap's config (`base_url`, `client_id`, `client_secret`, optional `time_scale`). The
library has its own limiter (at most one call per 0.2 s, measured from the end of the previous
call) and backoff; with `time_scale` k the benchmark shrinks Marketo's window and latency k
times, so this script makes the library's clock run k times faster too (its 0.2 s becomes
0.2/k s), which keeps its behaviour what it would be against the real limits.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import backoff._sync
from marketorestpython.client import MarketoClient
from marketorestpython.helper import http_lib

BATCH = 300
STREAMS = ("opportunities", "opportunity_roles")


class ScaledClock:
    """`time` as the library sees it: k times faster (sleeps k times shorter)."""

    def __init__(self, k: float) -> None:
        self.k = k

    def time(self) -> float:
        return time.time() * self.k

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds / self.k)


def client(config: dict[str, Any]) -> Any:
    k = float(config.get("time_scale") or 1.0)
    if k != 1.0:
        http_lib.time = ScaledClock(k)
        backoff._sync.time = ScaledClock(k)  # type: ignore[assignment]
    mc = MarketoClient("000-AAA-000", config["client_id"], config["client_secret"], requests_timeout=60)
    mc.host = config["base_url"]  # the library builds https://<munchkin>.mktorest.com; point it here
    return mc


def chunks(values: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def selected_fields(catalog: dict[str, Any], stream: str) -> list[str]:
    [entry] = [s for s in catalog["streams"] if s["tap_stream_id"] == stream]
    return list(entry["schema"]["properties"])


def read(config: dict[str, Any], catalog: dict[str, Any], start: int, end: int) -> dict[str, list[Any]]:
    mc = client(config)
    role_fields = selected_fields(catalog, "opportunity_roles")
    opportunity_fields = selected_fields(catalog, "opportunities")
    roles: list[dict[str, Any]] = []
    for leads in chunks(list(range(start, end + 1))):
        roles += mc.execute(
            method="get_opportunity_roles",
            filterType="leadId",
            filterValues=[str(lead) for lead in leads],
            fields=role_fields,
        )
    named = list(dict.fromkeys(r["externalOpportunityId"] for r in roles))
    opportunities: list[dict[str, Any]] = []
    for ids in chunks(named):
        opportunities += mc.execute(
            method="get_opportunities",
            filterType="externalOpportunityId",
            filterValues=ids,
            fields=opportunity_fields,
        )
    return {"opportunities": opportunities, "opportunity_roles": roles}


def write(config: dict[str, Any], singer_lines: Iterator[str]) -> list[dict[str, Any]]:
    mc = client(config)
    records: dict[str, list[dict[str, Any]]] = {stream: [] for stream in STREAMS}
    for line in singer_lines:
        message = json.loads(line)
        if message.get("type") == "RECORD" and message.get("stream") in records:
            records[message["stream"]].append(message["record"])
    results: list[dict[str, Any]] = []
    describes = {
        "opportunities": mc.execute(method="describe_opportunity")[0],
        "opportunity_roles": mc.execute(method="describe_opportunity_role")[0],
    }
    methods = {
        "opportunities": "create_update_opportunities",
        "opportunity_roles": "create_update_opportunities_roles",
    }
    for stream in STREAMS:
        describe = describes[stream]
        writable = {f["name"] for f in describe["fields"] if f.get("updateable")}
        writable |= {name for key in describe["dedupeFields"] for name in _names(key)}
        rows = [{k: v for k, v in record.items() if k in writable} for record in records[stream]]
        for batch in chunks(rows):
            results += mc.execute(method=methods[stream], input=batch, action="createOrUpdate")
    return results


def _names(key: Any) -> list[str]:
    return [key] if isinstance(key, str) else list(key)


def main(argv: list[str]) -> int:
    command, config_path, *rest = argv
    with open(config_path) as handle:
        config = json.load(handle)
    summary: dict[str, Any]
    if command == "read":
        catalog_path, start, end, out_path, summary_path = rest
        with open(catalog_path) as handle:
            catalog = json.load(handle)
        found = read(config, catalog, int(start), int(end))
        with open(out_path, "w") as out:
            for stream, rows in found.items():
                for row in rows:
                    out.write(json.dumps({"stream": stream, "record": row}) + "\n")
        summary = {"records": {stream: len(rows) for stream, rows in found.items()}}
    elif command == "write":
        singer_path, out_path, summary_path = rest
        with open(singer_path) as lines:
            results = write(config, lines)
        with open(out_path, "w") as out:
            out.writelines(json.dumps(result) + "\n" for result in results)
        statuses: dict[str, int] = {}
        for result in results:
            statuses[result["status"]] = statuses.get(result["status"], 0) + 1
        summary = {"statuses": statuses}
    else:
        raise SystemExit(f"unknown command {command!r}: read or write")
    with open(summary_path, "w") as handle:
        json.dump(summary, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
