"""singer-sdk's standard target tests, run against a sandbox, each checked for what it wrote.

The bundled test streams (test_array_data, TestCamelcase, ...) are not Marketo objects, so the
config routes every one of them to Opportunity with `stream_objects`; their records lack
externalOpportunityId and are rejected one by one (`max_rejections: null` keeps that from failing
the run), which still drives arrays, nested objects, unicode, schema changes and odd names through
validation and payload building. Four streams get a stream map that gives them a key and a name,
so they are really written to the sandbox.

After each file test, `validate` checks that run's lines in the results file: exactly one per
RECORD message of the file (none for the two files the SDK must refuse), `created`/`updated`
for the mapped streams and `rejected` (missing_key) for the others; and, for the mapped streams,
that the sandbox holds the last record given for each key.

Curated like MeltanoLabs/target-postgres's suite; one test is left out on purpose:

* `record_missing_key_property` expects the run to abort when a record lacks a Singer key
  property. This target checks Marketo's keys instead and rejects such a record on its own
  (a delete or an idField update legitimately carries only marketoGUID); see
  `test_update_only_by_id_field` and `test_deletes` in tests/target/test_sandbox.py.
"""

from __future__ import annotations

import atexit
import importlib.resources
import json
import shutil
import tempfile
import typing as t
from collections.abc import Callable
from pathlib import Path
from typing import Any

from singer_sdk.testing import SuiteConfig, get_target_test_class
from singer_sdk.testing import target_test_streams as bundled
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import (
    TargetArrayData,
    TargetCamelcaseComplexSchema,
    TargetCamelcaseTest,
    TargetCliPrintsTest,
    TargetDuplicateRecords,
    TargetEncodedStringData,
    TargetInvalidSchemaTest,
    TargetNoPrimaryKeys,
    TargetOptionalAttributes,
    TargetPrimaryKeyUpdates,
    TargetRecordBeforeSchemaTest,
    TargetRecordMissingOptionalFields,
    TargetSchemaNoProperties,
    TargetSchemaUpdates,
    TargetSpecialCharsInAttributes,
)
from singer_sdk.testing.templates import TargetFileTestTemplate, TargetTestTemplate

from marketo_sandbox import Sandbox, SandboxConfig
from target_marketo_opps.target import TargetMarketoOpps
from tests.support.target import run_lines, run_target

if t.TYPE_CHECKING:
    from importlib.resources.abc import Traversable


def _bundled_stream_names() -> list[str]:
    names: set[str] = set()
    for entry in importlib.resources.files(bundled).iterdir():
        if entry.name.endswith(".singer"):
            for line in entry.read_text(encoding="utf-8").splitlines():
                message = json.loads(line) if line.strip() else {}
                if message.get("type") == "SCHEMA":
                    names.add(message["stream"])
    return sorted(names)


# The standard suite builds its config when the class is defined, so the sandbox starts at import.
_SANDBOX = Sandbox(SandboxConfig.small(opportunities=5, leads=20, heavy_leads=0, rate_limit=None)).start()
atexit.register(_SANDBOX.stop)
_RESULTS_DIR = Path(tempfile.mkdtemp(prefix="target-standard-"))
atexit.register(shutil.rmtree, _RESULTS_DIR, True)

CONFIG: dict[str, Any] = {
    **_SANDBOX.connection_settings(),
    "max_rejections": None,
    "results_path": str(_RESULTS_DIR / "results.jsonl"),  # every test's run appends its lines
    "stream_objects": dict.fromkeys(_bundled_stream_names(), "opportunity"),
    "stream_maps": {
        "test_duplicate_records": {
            "externalOpportunityId": "'std-dup-' + str(id)",
            "name": "'Metric ' + str(metric)",
        },
        "test_strings": {"externalOpportunityId": "'std-str-' + str(id)", "name": "info"},
        "TestCamelcase": {"externalOpportunityId": "'std-camel-' + Id", "name": "clientName"},
        "test_array_data": {"externalOpportunityId": "'std-array-' + str(id)", "name": "'Fruit basket'"},
    },
}
#: What the stream maps above make of a record: (externalOpportunityId, name).
MAPPED: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "test_duplicate_records": lambda r: (f"std-dup-{r['id']}", f"Metric {r['metric']}"),
    "test_strings": lambda r: (f"std-str-{r['id']}", r["info"]),
    "TestCamelcase": lambda r: (f"std-camel-{r['Id']}", r["clientName"]),
    "test_array_data": lambda r: (f"std-array-{r['id']}", "Fruit basket"),
}


class SuiteTarget(TargetMarketoOpps):
    """The target as shipped; remembers its newest instance, so a test can find its run's lines."""

    newest: t.ClassVar[TargetMarketoOpps | None] = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        SuiteTarget.newest = self


def records_of(singer_file: Traversable | Path) -> list[dict[str, Any]]:
    """The RECORD messages of a .singer file, in order."""
    messages = [json.loads(line) for line in singer_file.read_text(encoding="utf-8").splitlines() if line]
    return [m for m in messages if m["type"] == "RECORD"]


def check_results(rows: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """One line per record; mapped streams written, every other record rejected for its key."""
    assert sorted(row["record"] for row in rows) == list(range(1, len(records) + 1))
    for row in rows:
        stream = records[row["record"] - 1]["stream"]
        assert row["stream"] == stream
        if stream in MAPPED:
            assert row["status"] in {"created", "updated"}, row
        else:
            assert (row["status"], [r["code"] for r in row["reasons"]]) == ("rejected", ["missing_key"]), row


def check_store(sandbox: Sandbox, records: list[dict[str, Any]]) -> None:
    """Each mapped key holds the name of the last record given for it."""
    expected = dict(MAPPED[m["stream"]](m["record"]) for m in records if m["stream"] in MAPPED)
    for key, name in expected.items():
        stored = sandbox.store.opportunity(key)
        assert stored is not None, key
        assert stored["name"] == name, key


def checked(template: type[TargetFileTestTemplate], *, refused: bool = False) -> type[TargetFileTestTemplate]:
    """The SDK's test plus a check of what its run wrote (`refused`: the SDK stops the run)."""

    class Checked(template):  # type: ignore[valid-type,misc]
        def validate(self) -> None:
            target = SuiteTarget.newest
            assert target is not None
            assert target is not self.target  # the instance that ran the file, made after it
            rows = run_lines(Path(CONFIG["results_path"]), target.results.run_id)
            records = [] if refused else records_of(self.singer_filepath)
            check_results(rows, records)
            check_store(_SANDBOX, records)

    Checked.__name__ = Checked.__qualname__ = template.__name__
    return Checked


CURATED: SingerTestSuite[TargetTestTemplate] = SingerTestSuite(
    kind="target",
    tests=[
        checked(TargetArrayData),
        checked(TargetCamelcaseComplexSchema),
        checked(TargetCamelcaseTest),
        TargetCliPrintsTest,
        checked(TargetDuplicateRecords),
        checked(TargetEncodedStringData),
        checked(TargetInvalidSchemaTest, refused=True),
        checked(TargetNoPrimaryKeys),
        checked(TargetOptionalAttributes),
        checked(TargetPrimaryKeyUpdates),
        checked(TargetRecordBeforeSchemaTest, refused=True),
        checked(TargetRecordMissingOptionalFields),
        checked(TargetSchemaNoProperties),
        checked(TargetSchemaUpdates),
        checked(TargetSpecialCharsInAttributes),
    ],
)

TestTargetMarketoOppsStandard = get_target_test_class(
    SuiteTarget,
    config=CONFIG,
    custom_suites=[CURATED],
    include_target_tests=False,
    suite_config=SuiteConfig(),
    parse_env_config=False,
)


def test_mapped_standard_streams_reached_the_sandbox(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """The four mapped bundled files on a sandbox of their own: independent of the suite above."""
    sandbox = make_sandbox(opportunities=5, leads=20, heavy_leads=0, rate_limit=None)
    config = {**CONFIG, **sandbox.connection_settings(), "results_path": str(tmp_path / "results.jsonl")}
    seeded = len(sandbox.store.opportunities())
    for name in ("array_data", "camelcase", "duplicate_records", "encoded_string_data"):
        records = records_of(importlib.resources.files(bundled) / f"{name}.singer")
        run = run_target(config, (importlib.resources.files(bundled) / f"{name}.singer").read_text("utf-8"))
        check_results(run.results, records)
        check_store(sandbox, records)
    assert len(sandbox.store.opportunities()) == seeded + 4 + 2 + 2 + 11  # keys: array, camel, dup, str
    assert sandbox.store.opportunity("std-dup-1")["name"] == "Metric 100"  # type: ignore[index]
