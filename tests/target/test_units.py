"""Target pieces that need no Marketo: settings, validation, payload building, result counting."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from contextlib import redirect_stdout
from decimal import Decimal
from pathlib import Path

import pytest
from singer_sdk.exceptions import ConfigValidationError, InvalidJSONSchema

from marketo_api import MarketoObject, Reason
from target_marketo_opps.records import (
    INVALID_VALUE,
    MISSING_KEY,
    NAME_REQUIRED,
    TOO_LARGE,
    TOO_LONG,
    Item,
    Outcome,
)
from target_marketo_opps.results import ResultsLog, is_failure
from target_marketo_opps.settings import config_errors
from target_marketo_opps.target import TargetMarketoOpps
from target_marketo_opps.validation import RecordValidator
from tests.support.payloads import builder

CONNECTION = {"base_url": "http://127.0.0.1:9", "client_id": "id", "client_secret": "secret"}


# ---- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["createOrUpdate", "createOnly"])
def test_id_field_is_refused_unless_update_only(action: str) -> None:
    with pytest.raises(ConfigValidationError) as info:
        TargetMarketoOpps(config={**CONNECTION, "action": action, "dedupe_by": "idField"})
    assert any("idField" in e and "updateOnly" in e for e in info.value.errors)


def test_id_field_with_update_only_is_accepted() -> None:
    target = TargetMarketoOpps(config={**CONNECTION, "action": "updateOnly", "dedupe_by": "idField"})
    assert target.settings.dedupe_by == "idField"
    assert target.settings.batch_size == 300
    assert target.settings.max_rejections == 0


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"batch_size_rows": 301}, "batch_size_rows"),
        ({"stream_objects": {"deals": "company"}}, "stream_objects"),
        ({"base_url": "http://example.com"}, "https"),
        ({"action": "upsert"}, "action"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(settings: dict, fragment: str) -> None:
    with pytest.raises(ConfigValidationError) as info:
        TargetMarketoOpps(config={**CONNECTION, **settings})
    assert any(fragment in e for e in info.value.errors), info.value.errors


def test_config_errors_lists_every_problem() -> None:
    errors = config_errors({**CONNECTION, "dedupe_by": "idField", "max_body_bytes": 10})
    assert len(errors) == 2


def test_about_lists_target_and_connection_settings() -> None:
    info = TargetMarketoOpps._get_about_info()
    names = set(info.settings["properties"])
    assert {"action", "dedupe_by", "batch_size_rows", "stream_objects", "results_path"} <= names
    assert {"max_rejections", "dry_run", "base_url", "client_id", "client_secret"} <= names
    assert info.settings["properties"]["batch_size_rows"]["maximum"] == 300
    assert info.settings["properties"]["client_secret"]["secret"] is True


# ---- validation ---------------------------------------------------------------------------


def test_validator_names_the_field() -> None:
    schema = {
        "type": "object",
        "properties": {
            "amount": {"type": ["number", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "nested": {"type": "object", "properties": {"id": {"type": "integer"}}},
        },
        "required": ["amount"],
    }
    validator = RecordValidator(schema)
    assert validator.compiled
    assert validator.error({"amount": Decimal("1.5"), "tags": ["a"]}) is None
    assert validator.error({"amount": "lots"}) == "field 'amount' must be number or null"
    assert validator.error({"amount": 1, "tags": ["a", 3]}) == "field 'tags[1]' must be string"
    assert validator.error({"amount": 1, "nested": {"id": "x"}}) == "field 'nested.id' must be integer"
    assert validator.error({}) == "record must contain ['amount'] properties"


def test_an_invalid_schema_stops_at_the_schema_message() -> None:
    with pytest.raises(InvalidJSONSchema, match="invalid schema"):
        RecordValidator({"type": "object", "properties": {"n": {"type": "integer", "minimum": "x"}}})


def test_a_schema_fastjsonschema_cannot_compile_falls_back_to_jsonschema() -> None:
    validator = RecordValidator(
        {"type": "object", "properties": {"n": {"$ref": "#/definitions/missing"}}}, stream_name="s"
    )
    assert not validator.compiled
    assert validator.error({"m": 1}) is None
    with pytest.raises(InvalidJSONSchema, match="cannot be used"):
        validator.error({"n": 1})


def test_validator_accepts_deleted_marker_even_with_closed_schema() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    assert RecordValidator(schema).error({"a": "x", "_sdc_deleted_at": "2026-01-01T00:00:00Z"}) is None


# ---- payload building ---------------------------------------------------------------------


def test_values_are_serialized_for_marketo() -> None:
    item = builder().build(
        1,
        "opportunities",
        {
            "externalOpportunityId": "X-1",
            "name": "Deal",
            "amount": Decimal("12345678901234.565"),
            "quantity": Decimal("0.1"),
            "probability": Decimal("40"),
            "closeDate": dt.date(2026, 3, 1),
            "externalCreatedDate": "2026-03-01T10:00:00+02:00",
            "lastReviewedAt": dt.datetime(2026, 3, 1, 8, 0),
            "isWon": False,
            "description": None,
        },
        deleted=False,
    )
    assert item.rejection is None
    assert item.payload == {
        "externalOpportunityId": "X-1",
        "name": "Deal",
        "amount": "12345678901234.565",
        "quantity": "0.1",
        "probability": 40,
        "closeDate": "2026-03-01",
        "externalCreatedDate": "2026-03-01T10:00:00+02:00",
        "lastReviewedAt": "2026-03-01T08:00:00+00:00",
        "isWon": False,
        "description": None,
    }
    assert item.size == len(json.dumps(item.payload, separators=(",", ":")))
    assert item.conflict_keys == (("opportunities", "dedupe", ("X-1",)),)


def test_unknown_and_read_only_fields_are_dropped_with_one_warning_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    build = builder()
    with caplog.at_level(logging.WARNING):
        for n in range(3):
            item = build.build(
                n,
                "opportunities",
                {
                    "externalOpportunityId": f"X-{n}",
                    "name": "n",
                    "crm_owner": "a",
                    "createdAt": "2026-01-01T00:00:00Z",
                    "marketoGUID": "g",
                    "legacyFormula": "f",
                    "_sdc_extracted_at": "2026-01-01T00:00:00Z",
                },
                deleted=False,
            )
            assert set(item.payload) == {"externalOpportunityId", "name"}
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 4
    assert sum("'crm_owner'" in m for m in warned) == 1
    assert sum("'marketoGUID'" in m and "not updateable" in m for m in warned) == 1


def test_id_field_is_kept_for_update_only_by_id() -> None:
    item = builder(action="updateOnly", dedupe_by="idField").build(
        1,
        "opportunities",
        {"marketoGUID": "abc", "externalOpportunityId": "X", "stage": "Won"},
        deleted=False,
    )
    assert item.payload == {"marketoGUID": "abc", "stage": "Won"}
    assert item.key == {"externalOpportunityId": "X", "marketoGUID": "abc"}


@pytest.mark.parametrize(
    ("action", "record", "code", "fragment"),
    [
        ("createOrUpdate", {"name": "n"}, MISSING_KEY, "'externalOpportunityId' is missing"),
        ("createOrUpdate", {"externalOpportunityId": " ", "name": "n"}, MISSING_KEY, "' is blank"),
        ("createOrUpdate", {"externalOpportunityId": None, "name": "n"}, MISSING_KEY, "' is null"),
        ("createOrUpdate", {"externalOpportunityId": "X", "name": None}, NAME_REQUIRED, "null"),
        ("updateOnly", {"externalOpportunityId": "X", "name": ""}, NAME_REQUIRED, "'name' is blank"),
        ("createOnly", {"externalOpportunityId": "X"}, NAME_REQUIRED, "missing"),
        ("createOrUpdate", {"externalOpportunityId": "X", "name": "n" * 256}, TOO_LONG, "255"),
        ("createOrUpdate", {"externalOpportunityId": "X" * 51, "name": "n"}, TOO_LONG, "50"),
        ("createOrUpdate", {"externalOpportunityId": "X", "probability": 1.5}, INVALID_VALUE, "probability"),
        ("createOrUpdate", {"externalOpportunityId": "X", "isWon": "maybe"}, INVALID_VALUE, "isWon"),
        ("createOrUpdate", {"externalOpportunityId": "X", "closeDate": "soon"}, INVALID_VALUE, "closeDate"),
    ],
)
def test_rejections_name_the_reason(action: str, record: dict, code: str, fragment: str) -> None:
    item = builder(action=action).build(7, "opportunities", record, deleted=False)
    assert item.rejection is not None
    assert item.rejection.code == code
    assert fragment in item.rejection.message


def test_create_or_update_without_name_is_sent() -> None:
    item = builder().build(1, "opportunities", {"externalOpportunityId": "X", "stage": "s"}, deleted=False)
    assert item.rejection is None


def test_a_record_over_the_body_limit_is_rejected() -> None:
    build = builder(max_body_bytes=1024)
    item = build.build(
        1, "opportunities", {"externalOpportunityId": "X", "description": "d" * 1500}, deleted=False
    )
    assert item.rejection is not None
    assert item.rejection.code == TOO_LARGE


def test_deletes_use_dedupe_fields_or_the_id_field() -> None:
    build = builder(MarketoObject.OPPORTUNITY_ROLE)
    by_key = build.build(
        1,
        "opportunity_roles",
        {"externalOpportunityId": "X", "leadId": Decimal("5"), "role": "R", "isPrimary": True},
        deleted=True,
    )
    assert (by_key.op, by_key.by, by_key.action) == ("delete", "dedupeFields", "delete")
    assert by_key.payload == {"externalOpportunityId": "X", "leadId": 5, "role": "R"}
    by_id = build.build(2, "opportunity_roles", {"marketoGUID": "g-1", "leadId": 5}, deleted=True)
    assert (by_id.by, by_id.payload) == ("idField", {"marketoGUID": "g-1"})
    nothing = build.build(3, "opportunity_roles", {"leadId": 5, "role": "R"}, deleted=True)
    assert nothing.rejection is not None
    assert nothing.rejection.code == MISSING_KEY


# ---- results ------------------------------------------------------------------------------


def test_failures_exclude_skips_that_reach_the_asked_end_state() -> None:
    exists = Outcome("skipped", reasons=(Reason("1017", "Object already exists"),))
    missing = Outcome("skipped", reasons=(Reason("1013", "Object not found"),))
    assert not is_failure("createOnly", exists)
    assert is_failure("createOrUpdate", exists)
    assert not is_failure("delete", missing)
    assert is_failure("createOrUpdate", Outcome("rejected", reasons=(Reason("too_long", "x"),)))
    assert not is_failure("createOrUpdate", Outcome("created", "g"))


def test_results_file_lines_and_summary(tmp_path: Path) -> None:
    log = ResultsLog(str(tmp_path / "deep" / "results.jsonl"), run_id="2026-11-01T00:00:00.000000Z/42")
    for n in range(7):
        item = Item(
            n + 1,
            "opportunities",
            MarketoObject.OPPORTUNITY,
            "sync",
            "createOrUpdate",
            "dedupeFields",
            {"externalOpportunityId": f"X-{n}"},
        )
        log.record(item, Outcome("skipped", reasons=(Reason("1004", "Opportunity not found"),)))
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "deep" / "results.jsonl").read_text().splitlines()]
    assert [r["record"] for r in rows] == list(range(1, 8))
    assert rows[0] == {
        "run": "2026-11-01T00:00:00.000000Z/42",
        "record": 1,
        "stream": "opportunities",
        "object": "opportunity",
        "action": "createOrUpdate",
        "key": {"externalOpportunityId": "X-0"},
        "status": "skipped",
        "marketoGUID": None,
        "reasons": [{"code": "1004", "message": "Opportunity not found"}],
        "note": None,
        "line": None,
        "batch": None,
    }
    summary = log.summary_lines()
    assert summary[0] == "Results for stream 'opportunities': skipped 7"
    assert summary[1].startswith("Reason 1004 (reported by Marketo) x7")
    assert summary[1].count("opportunities {") == 5  # up to five example keys


def test_a_run_without_records_passes_state_and_leaves_an_empty_results_file(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    target = TargetMarketoOpps(config={**CONNECTION, "results_path": str(results)})
    lines = [
        {"type": "SCHEMA", "stream": "opportunities", "schema": {"properties": {}}, "key_properties": []},
        {"type": "STATE", "value": {"empty": True}},
        {"type": "STATE", "value": {}},
    ]
    out = io.StringIO()
    with redirect_stdout(out):
        target.listen(file_input=io.StringIO("".join(json.dumps(m) + "\n" for m in lines)))
    assert out.getvalue() == '{"empty": true}\n'  # an empty state is never emitted
    assert results.read_text() == ""


def test_results_are_appended_after_cutting_a_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    earlier = '{"run": "earlier", "record": 1, "status": "created"}\n'
    path.write_text(earlier + '{"run": "earlier", "record": 2, "sta', encoding="utf-8")
    log = ResultsLog(str(path), run_id="now")
    item = Item(1, "opportunities", MarketoObject.OPPORTUNITY, "sync", "createOrUpdate", "dedupeFields", {})
    log.record(item, Outcome("created", "g-1"))
    log.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == earlier.strip()
    assert [json.loads(line)["run"] for line in lines] == ["earlier", "now"]
