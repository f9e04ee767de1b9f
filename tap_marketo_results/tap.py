"""TapMarketoResults: the results file of target-marketo-opps, one record per line.

The target writes one JSONL line per input record (created, updated, deleted, skipped with
Marketo's reason codes, rejected with the target's reason). Loaded into a warehouse table, a
user can `SELECT` what failed and why. Lines are read one at a time (constant memory); a line
that is not a results line stops the run with an error naming the file, the line and the field,
since silently dropping it would hide exactly the failures the file exists to report.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.helpers.types import Context, Record

STREAM = "marketo_results"

# The fields the target writes, and their JSON types (None allowed for all but run/record/status).
_KNOWN: dict[str, tuple[type, ...]] = {
    "run": (str,),
    "record": (int,),
    "stream": (str,),
    "object": (str,),
    "action": (str,),
    "key": (dict,),
    "status": (str,),
    "marketoGUID": (str,),
    "reasons": (list,),
    "note": (str,),
    "line": (int,),
    "batch": (dict,),
}
_REQUIRED = ("run", "record", "status")

RESULTS_SCHEMA = th.PropertiesList(
    th.Property("run", th.StringType, required=True, description="The target run's id: start time / pid"),
    th.Property("record", th.IntegerType, required=True, description="Input record number in that run"),
    th.Property("run_started_at", th.DateTimeType, description="Start of the run, from its id"),
    th.Property("stream", th.StringType),
    th.Property("object", th.StringType, description="opportunity or opportunity_role"),
    th.Property("action", th.StringType, description="createOrUpdate, createOnly, updateOnly or delete"),
    th.Property("key", th.ObjectType(additional_properties=True)),
    th.Property("status", th.StringType, required=True),
    th.Property("marketoGUID", th.StringType),
    th.Property(
        "reasons",
        th.ArrayType(
            th.ObjectType(th.Property("code", th.StringType), th.Property("message", th.StringType))
        ),
    ),
    th.Property("reason_codes", th.StringType, description="The reasons' codes, comma-separated"),
    th.Property("reason_messages", th.StringType, description="The reasons' messages, '; '-separated"),
    th.Property("note", th.StringType),
    th.Property("line", th.IntegerType, description="Line of the record in the target's input"),
    th.Property("batch", th.ObjectType(additional_properties=True)),
    th.Property(
        "extra", th.ObjectType(additional_properties=True), description="Fields this tap does not know"
    ),
    th.Property("results_file", th.StringType, description="The results file the line was read from"),
    th.Property("results_line", th.IntegerType, description="Line number in that file"),
).to_dict()


class ResultsFileError(Exception):
    """A line of the results file is not a results line (names the file, the line and the field)."""


def parse_line(text: str, *, path: str, number: int) -> Record:
    """One results line as a record; raises ResultsFileError naming the line and field."""
    where = f"{path} line {number}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{where}: not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, dict):
        raise ResultsFileError(f"{where}: not a JSON object")
    for name in _REQUIRED:
        if data.get(name) is None:
            raise ResultsFileError(f"{where}: field {name!r} is missing")
    record: Record = {"results_file": path, "results_line": number}
    extra: dict[str, Any] = {}
    for name, value in data.items():
        types = _KNOWN.get(name)
        if types is None:
            extra[name] = value
            continue
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            wanted = " or ".join(t.__name__ for t in types)
            raise ResultsFileError(f"{where}: field {name!r} should be {wanted}, not {type(value).__name__}")
        record[name] = value
    record["extra"] = extra or None
    record["run_started_at"] = _run_start(record["run"])
    reasons = record.get("reasons") or []
    for index, reason in enumerate(reasons):
        if not isinstance(reason, dict):
            raise ResultsFileError(f"{where}: field 'reasons' item {index} is not an object")
    record["reason_codes"] = ",".join(str(r.get("code")) for r in reasons) or None
    record["reason_messages"] = "; ".join(str(r.get("message")) for r in reasons) or None
    return record


def _run_start(run: str) -> str | None:
    """The run id is "<UTC start>/<pid>"; None when it has another form."""
    text = run.split("/", 1)[0].replace("Z", "+00:00")
    try:
        started = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return started.isoformat() if started.tzinfo else None


def read_results(path: str) -> Iterator[Record]:
    """Every line of the file, in order; blank lines are skipped."""
    with Path(path).open(encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if text.strip():
                yield parse_line(text, path=path, number=number)


class ResultsStream(Stream):
    """One record per results line; upserted on (run, record), so reloading the file adds nothing twice."""

    name = STREAM
    primary_keys: ClassVar[list[str]] = ["run", "record"]

    def __init__(self, tap: Tap) -> None:
        super().__init__(tap, schema=RESULTS_SCHEMA, name=STREAM)

    def get_records(self, context: Context | None) -> Iterable[Record]:
        path = str(self.config["results_path"])
        if not Path(path).is_file():
            raise ResultsFileError(f"results_path {path!r} is not a file")
        yield from read_results(path)


class TapMarketoResults(Tap):
    """Reads target-marketo-opps's results_path file."""

    name = "tap-marketo-results"
    config_jsonschema = th.PropertiesList(
        th.Property(
            "results_path",
            th.StringType,
            required=True,
            title="Results path",
            description="The target's results_path file (JSONL). A relative path is relative to the working "
            "directory.",
        ),
    ).to_dict()

    def discover_streams(self) -> list[Stream]:
        return [ResultsStream(self)]
