"""Unit tests of tap-marketo-opps parts that need no Marketo: key files, plans, types, seen-set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from singer_sdk.exceptions import ConfigValidationError

from marketo_api import FieldDescription, MarketoObject, from_api
from marketo_api.datatypes import KNOWN_TYPES, json_schema_for_field
from tap_marketo_opps.keys import key_sources
from tap_marketo_opps.pipeline import make_plan
from tap_marketo_opps.schemas import (
    LOGGED_UNREADABLE_PER_FIELD,
    RecordCoercer,
    coercion_field,
    unreadable_summary,
)
from tap_marketo_opps.seen import SeenSet

OPP = MarketoObject.OPPORTUNITY
ROLE = MarketoObject.OPPORTUNITY_ROLE


def values(config: dict) -> list[list]:
    return [list(source.values()) for source in key_sources(config)]


def test_sources_run_in_a_fixed_order_with_their_fields(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("A-1\nA-2\n")
    leads = tmp_path / "leads.txt"
    leads.write_text("7\n")
    config = {
        "filters": [{"object": "opportunity_role", "field": "leadId", "values": [5]}],
        "lead_id_range": {"start": 3, "end": 5},
        "lead_ids_file": str(leads),
        "lead_ids": [1, "2"],
        "external_opportunity_ids_file": str(ids),
        "external_opportunity_ids": [" X-1 "],
    }
    sources = key_sources(config)
    assert [(s.name, s.obj, s.field) for s in sources] == [
        ("external_opportunity_ids", OPP, "externalOpportunityId"),
        ("external_opportunity_ids_file", OPP, "externalOpportunityId"),
        ("lead_ids", ROLE, "leadId"),
        ("lead_ids_file", ROLE, "leadId"),
        ("lead_id_range", ROLE, "leadId"),
        ("filters[0]", ROLE, "leadId"),
    ]
    assert values(config) == [["X-1"], ["A-1", "A-2"], [1, 2], [7], [3, 4, 5], [5]]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("OPP-1\nOPP-2\n", ["OPP-1", "OPP-2"]),
        ("externalOpportunityId\nOPP-1\n\nOPP-2\n", ["OPP-1", "OPP-2"]),
        ("\ufeffExternal_Opportunity_Id\r\nOPP-1\r\nOPP-2\r\n", ["OPP-1", "OPP-2"]),
        ('name,externalOpportunityId\n"Smith, Jones",OPP-1\nX,OPP-2\nY,\n', ["OPP-1", "OPP-2"]),
        ("id\tname\nOPP-1\tA\n", ["OPP-1"]),
        ("", []),
    ],
    ids=["plain", "header", "bom-crlf", "csv-quoted", "tsv", "empty"],
)
def test_external_id_files(tmp_path: Path, content: str, expected: list[str]) -> None:
    path = tmp_path / "ids"
    path.write_bytes(content.encode())
    assert values({"external_opportunity_ids_file": str(path)}) == [expected]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('externalOpportunityId\n"OPP-000001"\n"OPP-000002"\n', ["OPP-000001", "OPP-000002"]),
        ('"OPP-1"\n  " OPP-2 "  \n"say ""hi"""\n', ["OPP-1", "OPP-2", 'say "hi"']),
        ('"externalOpportunityId"\r\n"OPP-1"\r\n', ["OPP-1"]),
        ("ACME|2024-001\nACME|2024-002\n", ["ACME|2024-001", "ACME|2024-002"]),
        ("A;1\nB;2\n", ["A;1", "B;2"]),
        ("A\t1\nB\t2\n", ["A\t1", "B\t2"]),
        ("id\nACME|1\nACME;2\n", ["ACME|1", "ACME;2"]),
        ('"name","externalOpportunityId"\n"X","OPP-1"\n', ["OPP-1"]),
        ("\nOPP-1\n", ["OPP-1"]),
    ],
    ids=[
        "quoted",
        "quoted-no-header",
        "quoted-header",
        "pipes",
        "semicolons",
        "tabs",
        "header-then-pipes",
        "quoted-csv-header",
        "leading-blank",
    ],
)
def test_one_column_files_with_quotes_and_delimiters(
    tmp_path: Path, content: str, expected: list[str]
) -> None:
    path = tmp_path / "ids"
    path.write_bytes(content.encode())
    assert values({"external_opportunity_ids_file": str(path)}) == [expected]


def test_quoted_lead_file(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes(b'\xef\xbb\xbfleadId\r\n"5"\r\n\r\n"6"\r\n')
    assert values({"lead_ids_file": str(path)}) == [[5, 6]]


def test_one_column_file_reading_delimiters_as_values_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "pipes.txt"
    path.write_text("ACME|1\nACME|2\n")
    assert values({"external_opportunity_ids_file": str(path)}) == [["ACME|1", "ACME|2"]]
    assert "names no key column" in caplog.text


def test_first_line_is_a_header_only_if_it_names_a_key_column(tmp_path: Path) -> None:
    path = tmp_path / "ids.txt"
    path.write_text("opp_ref\nOPP-1\n")
    assert values({"external_opportunity_ids_file": str(path)}) == [["opp_ref", "OPP-1"]]
    leads = tmp_path / "leads.txt"
    leads.write_text("lead_ids\n1\n")
    with pytest.raises(ConfigValidationError, match="lead_ids"):
        values({"lead_ids_file": str(leads)})


@pytest.mark.parametrize(
    ("setting", "content", "match"),
    [
        ("lead_ids_file", "name\tamount\nA\t1\n", "no key column"),
        ("lead_ids_file", "name;amount\nA;1\n", "no key column"),
        ("external_opportunity_ids_file", "externalOpportunityId\nOPP-1\nA,B\n", "comma-separated"),
        ("external_opportunity_ids_file", 'externalOpportunityId\n"A,B"\n', "comma"),
        # A quote left open would otherwise swallow every later row, and their keys with it.
        ("lead_ids_file", "leadId,note\n1,a\n2,\"5' 10 inch\n3,b\n4,c\n", "line 3: unexpected end of data"),
        (
            "lead_ids_file",
            'leadId,note\n1,a\n2,"5 inch\n3,b\n4,c"\n5,d\n',
            "starting at line 3 runs over lines 3-5",
        ),
    ],
    ids=["tsv-lead", "semicolon-lead", "unquoted-comma", "quoted-comma", "open-quote", "multi-line-row"],
)
def test_key_files_that_cannot_be_read_are_refused(
    tmp_path: Path, setting: str, content: str, match: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ConfigValidationError, match=match):
        values({setting: str(path)})


def test_a_key_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_bytes("leadId,name\n2,José\n".encode("cp1252"))
    with pytest.raises(ConfigValidationError, match=r"leads.csv: is not UTF-8 text \(byte 0xe9\)"):
        values({"lead_ids_file": str(path)})


def test_csv_without_a_key_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("name,amount\nA,1\n")
    with pytest.raises(ConfigValidationError, match="no key column"):
        values({"external_opportunity_ids_file": str(path)})


def test_lead_file_rejects_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "leads.txt"
    path.write_text("1\n2\nx3\n")
    with pytest.raises(ConfigValidationError, match="x3"):
        values({"lead_ids_file": str(path)})


def test_key_files_are_read_lazily(tmp_path: Path) -> None:
    path = tmp_path / "leads.txt"
    path.write_text("".join(f"{i}\n" for i in range(1, 100_001)))
    iterator = key_sources({"lead_ids_file": str(path)})[0].values()
    assert next(iterator) == 1  # nothing else was parsed yet; the file handle streams lines
    assert sum(1 for _ in iterator) == 99_999


def test_scan_fingerprint_depends_on_the_keys() -> None:
    first = key_sources({"lead_ids": [1, 2, 3]})[0].scan()
    same = key_sources({"lead_ids": [1, 2, 3]})[0].scan()
    other = key_sources({"lead_ids": [1, 2, 4]})[0].scan()
    assert first == same
    assert first[0] == other[0] == 3
    assert first[1] != other[1]


@pytest.mark.parametrize(
    "config",
    [
        {"lead_ids": [0]},
        {"lead_ids": [True]},
        {"external_opportunity_ids": ["a,b"]},
        {"lead_id_range": {"start": 5}},
        {"filters": [{"object": "opportunity", "field": "", "values": ["x"]}]},
        {"filters": [{"object": "opportunity", "field": "region", "values": []}]},
    ],
)
def test_malformed_sources_are_refused(config: dict) -> None:
    with pytest.raises(ConfigValidationError):
        key_sources(config)


def test_plans_ask_only_for_what_the_selection_needs() -> None:
    opp_fields = ("marketoGUID", "name")
    role_fields = ("marketoGUID", "leadId")
    both = make_plan(ROLE, "leadId", opportunity_fields=opp_fields, role_fields=role_fields)
    assert both is not None
    assert (both.primary, both.emit_primary, both.follow_up) == (ROLE, True, OPP)
    assert both.primary_fields == ("marketoGUID", "leadId", "externalOpportunityId")
    opps_only = make_plan(ROLE, "leadId", opportunity_fields=opp_fields, role_fields=None)
    assert opps_only is not None
    assert (opps_only.primary, opps_only.emit_primary, opps_only.primary_fields) == (
        ROLE,
        False,
        ("externalOpportunityId",),
    )
    roles_only = make_plan(OPP, "externalOpportunityId", opportunity_fields=None, role_fields=role_fields)
    assert roles_only is not None
    assert (roles_only.primary, roles_only.follow_up, roles_only.dedupe) == (ROLE, None, False)
    company_roles = make_plan(OPP, "externalCompanyId", opportunity_fields=None, role_fields=role_fields)
    assert company_roles is not None
    assert (company_roles.primary, company_roles.emit_primary, company_roles.follow_up) == (OPP, False, ROLE)
    assert make_plan(OPP, "x", opportunity_fields=None, role_fields=None) is None


@pytest.mark.parametrize("data_type", sorted(KNOWN_TYPES | {"formula"}))
def test_coercion_from_the_catalog_schema_matches_the_data_type(data_type: str) -> None:
    """Reading a value through the catalog schema gives what reading it by dataType gives."""
    described = FieldDescription("f", "F", data_type, 20, True)
    prop = json_schema_for_field(described)
    field = coercion_field("f", prop)
    samples = {
        "integer": "42",
        "score": 7,
        "percent": "15",
        "float": "0.1",
        "currency": "1604.47",
        "boolean": "true",
        "date": "2024-02-29",
        "datetime": "2024-02-29T10:00:00Z",
    }
    value = samples.get(data_type, "text")
    coercer = RecordCoercer("s", {"properties": {"f": prop}})
    assert coercer.coerce({"f": value}, ("f",)) == {"f": from_api(described, value)}
    assert field.length == (20 if "maxLength" in prop else None)


def test_a_bad_value_becomes_null_with_a_warning_naming_record_and_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts: dict[tuple[str, str], int] = {}
    coercer = RecordCoercer("s", {"properties": {"n": {"type": ["integer", "null"]}}}, counts)
    assert coercer.coerce({"n": "1.5", "marketoGUID": "g"}, ("n", "missing")) == {"n": None, "missing": None}
    assert counts == {("s", "n"): 1}
    assert "s record marketoGUID g: field 'n' (integer): cannot read '1.5'" in caplog.text
    assert "emitted as null" in caplog.text


def test_unreadable_values_are_all_counted_but_only_the_first_ones_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schema = {"properties": {"n": {"type": ["integer", "null"]}, "d": {"type": "string", "format": "date"}}}
    coercer = RecordCoercer("s", schema)
    total = LOGGED_UNREADABLE_PER_FIELD + 5
    for i in range(total):
        coercer.coerce({"n": "x", "d": "not a date", "externalOpportunityId": f"OPP-{i}"}, ("n", "d"))
    assert coercer.unreadable == {("s", "n"): total, ("s", "d"): total}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 * LOGGED_UNREADABLE_PER_FIELD
    assert lines[0].startswith("s record externalOpportunityId OPP-0: field 'n'")
    assert sum("further ones are only counted" in line for line in lines) == 2
    assert unreadable_summary(coercer.unreadable) == f"s.d {total}, s.n {total}"


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_seen_set_memory_stays_flat() -> None:
    with SeenSet() as seen:
        assert seen.add_new(["a", "b", "a"]) == ["a", "b"]
        assert seen.add_new(["b", "c"]) == ["c"]
        before = _rss_mb()
        for start in range(0, 200_000, 2_000):
            seen.add_new(f"OPP-{i:010d}-padding" for i in range(start, start + 2_000))
        grown = _rss_mb() - before
        assert len(seen) == 200_003
        # A Python set of these ids would take about 25 MB more; the SQLite file takes ~0.
        assert grown < 10, f"RSS grew by {grown:.1f} MB"
        assert seen.add_new(["OPP-0000000001-padding", "new"]) == ["new"]


def test_config_problems_are_warned_about_when_validation_is_off(caplog: pytest.LogCaptureFixture) -> None:
    from tap_marketo_opps.tap import TapMarketoOpps

    config = {"client_id": "i", "client_secret": "s", "munchkin_id": "bad", "lead_ids": [0]}
    with pytest.raises(ConfigValidationError) as raised:
        TapMarketoOpps(config=config, parse_env_config=False)
    assert raised.value.errors == [
        "munchkin_id must look like 123-ABC-456",
        "lead_ids: lead id 0 must be positive",
    ]
    TapMarketoOpps(config=config, parse_env_config=False, validate_config=False, setup_mapper=False)
    assert "Config: munchkin_id must look like 123-ABC-456" in caplog.text
    assert "Config: lead_ids: lead id 0 must be positive" in caplog.text
