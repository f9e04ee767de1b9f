"""Per-record cost of record validation: singer-sdk's default vs target-marketo-opps.

Run: .venv/bin/python -m bench.validation [records]   (also part of `make bench`)

Records are opportunities as tap-marketo-opps emits them (the sandbox's seed data, read with
`marketo_api.datatypes.from_api`), validated against the schema the tap declares
(`json_schema_for(describe)`). Three paths are timed per record:

* sdk: singer-sdk 0.54's `Sink._validate_and_parse` (jsonschema Draft 2020-12, then parsing of
  date/date-time strings into Python objects), as every SDK target does by default;
* target: `MarketoSink._validate_and_parse` (fastjsonschema, compiled once; no date parsing);
* target + payload: the above plus building the Marketo payload (describe hygiene, `to_api`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from singer_sdk.sinks import Sink

from marketo_api import ObjectDescription, json_schema_for
from marketo_api.datatypes import from_api
from marketo_api.describe import MarketoObject
from marketo_sandbox import DEFAULT_CUSTOM_FIELDS, SandboxConfig, seed
from marketo_sandbox.schema import opportunity_schema
from target_marketo_opps.payloads import PayloadBuilder
from target_marketo_opps.sinks import MarketoSink
from target_marketo_opps.target import TargetMarketoOpps


class _SdkSink(Sink):
    def process_record(self, record: dict, context: dict) -> None:
        pass

    def process_batch(self, context: dict) -> None:
        pass


def _records(description: ObjectDescription, count: int) -> list[dict[str, Any]]:
    _, opportunities, _ = seed.build(SandboxConfig.small(opportunities=max(count // 10, 10)))
    fields = {f.name: f for f in description.fields}
    rows = [{name: from_api(fields[name], value) for name, value in row.items()} for row in opportunities]
    return [dict(rows[i % len(rows)]) for i in range(count)]


def _time(label: str, records: list[dict[str, Any]], step: Callable[[dict[str, Any]], Any]) -> float:
    copies = [dict(r) for r in records]
    started = time.perf_counter()
    for record in copies:
        step(record)
    elapsed = time.perf_counter() - started
    per_record = elapsed / len(records) * 1e6
    print(f"{label:<22} {per_record:8.1f} us/record {len(records) / elapsed:10.0f} records/s")
    return per_record


def main(count: int) -> None:
    description = ObjectDescription.from_api(opportunity_schema(list(DEFAULT_CUSTOM_FIELDS)).describe())
    schema = json_schema_for(description)
    records = _records(description, count)
    config = {"base_url": "http://127.0.0.1:9", "client_id": "x", "client_secret": "y"}
    target = TargetMarketoOpps(config=config)
    sdk_sink = _SdkSink(target, "opportunities", schema, ["externalOpportunityId"])
    our_sink = MarketoSink(target, "opportunities", schema, ["externalOpportunityId"])
    builder = PayloadBuilder(
        MarketoObject.OPPORTUNITY,
        description,
        action="createOrUpdate",
        dedupe_by="dedupeFields",
        max_body_bytes=1024 * 1024,
        logger=target.logger,
    )
    assert our_sink._validate_and_parse(dict(records[0])) is not None

    def ours_and_payload(record: dict[str, Any]) -> Any:
        our_sink._validate_and_parse(record)
        return builder.build(1, "opportunities", record, deleted=False)

    print(f"{count} opportunity records, {len(schema['properties'])} properties")
    sdk = _time("sdk (jsonschema)", records, sdk_sink._validate_and_parse)
    ours = _time("target (fastjsonschema)", records, our_sink._validate_and_parse)
    _time("target + payload", records, ours_and_payload)
    print(f"validation speed-up: {sdk / ours:.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
