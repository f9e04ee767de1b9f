"""A bare singer-sdk tap and target: the floor our connectors are compared with in `make bench`.

Both move the records the real tap wrote (a Singer file) with nothing but singer-sdk's own work, so
"ours ÷ bare" shows what the Marketo parts cost on top of the SDK:

* `BareTap` loads the file's opportunity and role records into memory (a JSON parse per record, as
  our tap parses Marketo's answers) and has one plain `Stream` per stream yield them, with the
  schemas and keys the real tap declared;
* `BareTarget`'s sink is a `BatchSink` whose `process_batch` does nothing, so the figure is the
  SDK's default processing (message parsing, jsonschema validation, date parsing, batching).

Run through their command lines, like the real connectors:

    .venv/bin/python -m bench.bare tap --config '{"input_path": "tap-1.singer"}' > out.singer
    .venv/bin/python -m bench.bare target < out.singer
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from singer_sdk import Stream, Tap, Target
from singer_sdk import typing as th
from singer_sdk.sinks import BatchSink

STREAMS = ("opportunities", "opportunity_roles")


class _MemoryStream(Stream):
    """One stream's records, already in memory."""

    def __init__(self, tap: Tap, name: str, schema: dict, keys: list[str], records: list[dict]) -> None:
        super().__init__(tap, schema=schema, name=name)
        self.primary_keys = keys
        self._records = records

    def get_records(self, context: Mapping[str, Any] | None) -> Iterable[dict]:
        yield from self._records


class BareTap(Tap):
    """Replays the opportunities and roles of a Singer file written by tap-marketo-opps."""

    name = "tap-bare"
    config_jsonschema = th.PropertiesList(
        th.Property("input_path", th.StringType, required=True, description="a Singer file")
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        schemas: dict[str, dict[str, Any]] = {}
        records: dict[str, list[dict]] = {name: [] for name in STREAMS}
        with Path(self.config["input_path"]).open() as lines:
            for line in lines:
                message = json.loads(line)
                stream = message.get("stream")
                if stream not in records:
                    continue
                if message["type"] == "SCHEMA":
                    schemas.setdefault(stream, message)
                elif message["type"] == "RECORD":
                    records[stream].append(message["record"])
        return [
            _MemoryStream(self, name, schemas[name]["schema"], schemas[name]["key_properties"], records[name])
            for name in STREAMS
            if name in schemas
        ]


class _NothingSink(BatchSink):
    """The SDK's default record handling, then nothing."""

    def process_batch(self, context: dict) -> None:
        pass


class BareTarget(Target):
    """Accepts any stream and drops its records after singer-sdk's default processing."""

    name = "target-bare"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = _NothingSink


def main() -> None:
    kind = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    connectors: dict[str, type[Tap] | type[Target]] = {"tap": BareTap, "target": BareTarget}
    if kind not in connectors:
        raise SystemExit("usage: python -m bench.bare tap|target [singer-sdk options]")
    connectors[kind].cli()


if __name__ == "__main__":
    main()
