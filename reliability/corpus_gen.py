"""Writes the bad-input corpus: tests/data/bad_inputs/*.singer plus index.json (run once, committed).

    .venv/bin/python -m reliability.corpus_gen

Every file holds good records (externalOpportunityId `G-…`, listed in the index with their
line) around one hostile thing. The index says, per file, which line is hostile, how many
hostile records it holds, and which outcome classes are acceptable (see reliability/corpus.py
and RELIABILITY.md for the rules). Files marked `template` contain `@DIR@`, replaced by the
directory the runner copies the corpus to (BATCH manifests need absolute file URIs).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .workload import OPP_PROPERTIES, ROLE_PROPERTIES

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "bad_inputs"
OPP_SCHEMA: dict[str, Any] = {
    "type": "SCHEMA",
    "stream": "opportunities",
    "schema": {
        "type": "object",
        "properties": {
            **OPP_PROPERTIES,
            "probability": {"type": ["integer", "null"]},
            "isWon": {"type": ["boolean", "null"]},
            "description": {"type": ["string", "null"]},
            "closeDate": {"type": ["string", "null"], "format": "date"},
            "externalCreatedDate": {"type": ["string", "null"], "format": "date-time"},
        },
    },
    "key_properties": ["externalOpportunityId"],
}
ROLE_SCHEMA = {
    "type": "SCHEMA",
    "stream": "opportunity_roles",
    "schema": {"type": "object", "properties": ROLE_PROPERTIES},
    "key_properties": ["externalOpportunityId", "leadId", "role"],
}
REJECT = ["bad_rejected", "run_failed"]
OPP_LINE_START = b'{"type": "RECORD", "stream": "opportunities", "record": {'


def opp_line(fields: bytes) -> bytes:
    """A RECORD line written by hand, for bytes json.dumps would never produce."""
    return OPP_LINE_START + fields + b"}}"


class Doc:
    """One corpus file being built: lines (bytes) and what the index says about them."""

    def __init__(self, number: int, name: str, description: str, acceptable: list[str]) -> None:
        self.number = number
        self.file = f"{number:02d}_{name}.singer"
        self.description = description
        self.acceptable = acceptable
        self.lines: list[bytes] = []
        self.good: list[dict[str, Any]] = []
        self.bad_lines: list[int] = []
        self.bad_line: int | None = None
        self.bad_statuses = ["rejected", "skipped"]
        self.stored: dict[str, Any] | None = None
        self.template = False
        self._next = 0
        self.extra_files: dict[str, bytes] = {}

    def raw(self, line: bytes) -> int:
        self.lines.append(line)
        return len(self.lines)

    def msg(self, message: Any) -> int:
        return self.raw(json.dumps(message).encode())

    def schemas(self) -> Doc:
        self.msg(OPP_SCHEMA)
        self.msg(ROLE_SCHEMA)
        return self

    def good_opp(self, **fields: Any) -> int:
        self._next += 1
        eid = f"G-{self.number:02d}-{self._next}"
        record = {"externalOpportunityId": eid, "name": f"Good {eid}", "amount": 10.5, **fields}
        line = self.msg({"type": "RECORD", "stream": "opportunities", "record": record})
        self.good.append(
            {
                "line": line,
                "stream": "opportunities",
                "key": {"externalOpportunityId": eid},
                "name": record["name"],
            }
        )
        return line

    def good_role(self, eid: str, lead: int) -> int:
        key = {"externalOpportunityId": eid, "leadId": lead, "role": "Champion"}
        line = self.msg(
            {"type": "RECORD", "stream": "opportunity_roles", "record": {**key, "isPrimary": True}}
        )
        self.good.append({"line": line, "stream": "opportunity_roles", "key": key})
        return line

    def goods(self, count: int) -> Doc:
        for _ in range(count):
            self.good_opp()
        return self

    def state(self) -> int:
        return self.msg({"type": "STATE", "value": {"line": len(self.lines) + 1}})

    def bad(self, line: bytes | dict[str, Any], *, record: bool = True) -> int:
        number = self.raw(line) if isinstance(line, bytes) else self.msg(line)
        self.bad_line = self.bad_line or number
        if record:
            self.bad_lines.append(number)
        return number

    def bad_opp(self, record: Any) -> int:
        return self.bad({"type": "RECORD", "stream": "opportunities", "record": record})

    def index_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "file": self.file,
            "description": self.description,
            "bad_line": self.bad_line,
            "bad_lines": self.bad_lines,
            "acceptable": self.acceptable,
            "bad_statuses": self.bad_statuses,
            "good": self.good,
        }
        if self.stored:
            entry["stored"] = self.stored
        if self.template:
            entry["template"] = True
        return entry


Builder = Callable[[Doc], None]
ITEMS: list[tuple[str, str, list[str], Builder]] = []


def item(name: str, description: str, acceptable: list[str]) -> Callable[[Builder], Builder]:
    def register(build: Builder) -> Builder:
        ITEMS.append((name, description, acceptable, build))
        return build

    return register


def around(bad: Callable[[Doc], object], before: int = 3, after: int = 2) -> Builder:
    def build(doc: Doc) -> None:
        doc.schemas().goods(before)
        doc.state()
        bad(doc)
        doc.goods(after)
        doc.state()

    return build


def by_target(bad: Callable[[Doc], object]) -> Builder:
    """Like `around`, but only the target's own rejection will do: Marketo's answer is unknown."""

    def build(doc: Doc) -> None:
        doc.bad_statuses = ["rejected"]
        around(bad)(doc)

    return build


def _opp(eid: str, **fields: Any) -> dict[str, Any]:
    return {"externalOpportunityId": eid, "name": f"Bad {eid}", **fields}


def register_items() -> None:
    def reg(name: str, description: str, acceptable: list[str], build: Builder) -> None:
        item(name, description, acceptable)(build)

    def late_malformed(doc: Doc) -> None:
        doc.schemas().goods(20)
        doc.state()
        doc.bad(OPP_LINE_START + b'"externalOpportunityId": "B-1", "name": ')
        doc.goods(2)
        doc.state()

    reg("malformed_json_late", "a line of broken JSON after 20 good records", REJECT, late_malformed)
    reg(
        "unknown_message_type",
        'a message of type "FOO"',
        ["run_failed"],
        around(lambda d: d.bad({"type": "FOO", "value": 1}, record=False)),
    )

    def before_schema(doc: Doc) -> None:
        doc.bad({"type": "RECORD", "stream": "opportunities", "record": _opp("B-1")})
        doc.schemas().goods(2)
        doc.state()

    reg("record_before_schema", "a RECORD before any SCHEMA of its stream", REJECT, before_schema)
    reg(
        "schema_not_object",
        'SCHEMA whose "schema" is a string',
        ["run_failed"],
        around(
            lambda d: d.bad(
                {"type": "SCHEMA", "stream": "opportunities", "schema": "nope", "key_properties": []},
                record=False,
            )
        ),
    )
    reg(
        "schema_bad_type",
        'SCHEMA with {"type": "nonsense"} for a property',
        ["run_failed"],
        around(
            lambda d: d.bad(
                {**OPP_SCHEMA, "schema": {"type": "object", "properties": {"name": {"type": "nonsense"}}}},
                record=False,
            )
        ),
    )

    def unknown_stream_late(doc: Doc) -> None:
        doc.schemas().goods(15)
        doc.state()
        doc.bad({**OPP_SCHEMA, "stream": "crm_deals"}, record=False)
        doc.msg({"type": "RECORD", "stream": "crm_deals", "record": _opp("B-2")})
        doc.goods(2)
        doc.state()

    reg(
        "unknown_stream_late",
        "SCHEMA of an unmapped stream after 15 good records",
        ["run_failed"],
        unknown_stream_late,
    )
    reg(
        "record_of_unknown_stream",
        "RECORD of a stream that never had a SCHEMA, late",
        REJECT,
        around(lambda d: d.bad({"type": "RECORD", "stream": "crm_deals", "record": _opp("B-1")}), before=10),
    )
    reg(
        "lone_surrogate_key",
        "externalOpportunityId holding a lone UTF-16 surrogate (\\ud800)",
        REJECT,
        around(lambda d: d.bad(opp_line(b'"externalOpportunityId": "B-\\ud800", "name": "x"'))),
    )
    reg(
        "lone_surrogate_value",
        "name holding a lone low surrogate (\\udc00)",
        REJECT,
        around(lambda d: d.bad(opp_line(b'"externalOpportunityId": "B-1", "name": "a\\udc00b"'))),
    )

    def bom(doc: Doc) -> None:
        doc.bad_line = 1
        doc.raw(b"\xef\xbb\xbf" + json.dumps(OPP_SCHEMA).encode())
        doc.msg(ROLE_SCHEMA)
        doc.goods(3)
        doc.state()

    reg("bom_line_1", "a UTF-8 byte order mark before line 1", ["all_written", "run_failed"], bom)

    def deleted_as(value: Any, name: str, description: str) -> None:
        def build(doc: Doc) -> None:
            doc.bad_statuses = ["rejected", "created"]  # not a delete marker, or refused; never a delete
            around(lambda d: d.bad_opp(_opp("B-1", _sdc_deleted_at=value)))(doc)

        reg(name, description, ["bad_rejected", "all_written", "run_failed"], build)

    deleted_as(False, "deleted_at_false", "_sdc_deleted_at: false (not a delete marker)")
    deleted_as(0, "deleted_at_zero", "_sdc_deleted_at: 0")
    deleted_as([], "deleted_at_empty_list", "_sdc_deleted_at: []")
    reg(
        "deleted_at_junk",
        '_sdc_deleted_at: "2024-01-01Tjunk"',
        REJECT,
        around(lambda d: d.bad_opp(_opp("B-1", _sdc_deleted_at="2024-01-01Tjunk"))),
    )
    reg(
        "datetime_junk",
        'externalCreatedDate "2024-01-01Tjunk"',
        REJECT,
        around(lambda d: d.bad_opp(_opp("B-1", externalCreatedDate="2024-01-01Tjunk"))),
    )

    def naive(doc: Doc) -> None:
        doc.bad_statuses = ["rejected", "created"]
        doc.stored = {
            "field": "externalCreatedDate",
            "values": ["2024-01-01T10:00:00Z", "2024-01-01T10:00:00+00:00"],
        }
        around(lambda d: d.bad_opp(_opp("B-1", externalCreatedDate="2024-01-01T10:00:00")))(doc)

    reg(
        "naive_datetime",
        "externalCreatedDate without an offset (written only if read as UTC)",
        ["bad_rejected", "all_written", "run_failed"],
        naive,
    )
    reg(
        "date_out_of_range",
        'closeDate "2024-13-45"',
        REJECT,
        around(lambda d: d.bad_opp(_opp("B-1", closeDate="2024-13-45"))),
    )
    reg(
        "record_is_list",
        '"record": [1, 2]',
        REJECT,
        around(lambda d: d.bad({"type": "RECORD", "stream": "opportunities", "record": [1, 2]})),
    )
    reg(
        "record_is_null",
        '"record": null',
        REJECT,
        around(lambda d: d.bad({"type": "RECORD", "stream": "opportunities", "record": None})),
    )
    reg(
        "record_is_string",
        '"record": "text"',
        REJECT,
        around(lambda d: d.bad({"type": "RECORD", "stream": "opportunities", "record": "x"})),
    )
    reg(
        "record_missing",
        "RECORD without a record field",
        REJECT,
        around(lambda d: d.bad({"type": "RECORD", "stream": "opportunities"})),
    )
    reg("key_whitespace", 'externalOpportunityId "   "', REJECT, around(lambda d: d.bad_opp(_opp("   "))))
    reg(
        "key_nbsp",
        "externalOpportunityId of one no-break space (U+00A0)",
        REJECT,
        around(lambda d: d.bad_opp(_opp("\u00a0"))),
    )
    reg("key_empty", 'externalOpportunityId ""', REJECT, around(lambda d: d.bad_opp(_opp(""))))
    reg(
        "key_null",
        "externalOpportunityId null",
        REJECT,
        around(lambda d: d.bad_opp({"externalOpportunityId": None, "name": "x"})),
    )
    reg("key_missing", "no externalOpportunityId", REJECT, around(lambda d: d.bad_opp({"name": "no key"})))
    reg(
        "key_overlong",
        "externalOpportunityId of 300 characters",
        REJECT,
        around(lambda d: d.bad_opp(_opp("B-" + "k" * 298))),
    )

    def key_number(doc: Doc) -> None:
        doc.bad_statuses = ["rejected", "created"]
        around(lambda d: d.bad_opp({"externalOpportunityId": 4242, "name": "numeric key"}))(doc)

    reg(
        "key_number",
        "externalOpportunityId 4242 (a number; the schema says string)",
        ["bad_rejected", "all_written", "run_failed"],
        key_number,
    )
    reg(
        "role_lead_null",
        "role with leadId null",
        REJECT,
        around(
            lambda d: d.bad(
                {
                    "type": "RECORD",
                    "stream": "opportunity_roles",
                    "record": {"externalOpportunityId": "G-x", "leadId": None, "role": "R"},
                }
            )
        ),
    )
    reg(
        "role_lead_text",
        'role with leadId "abc"',
        REJECT,
        around(
            lambda d: d.bad(
                {
                    "type": "RECORD",
                    "stream": "opportunity_roles",
                    "record": {"externalOpportunityId": "G-x", "leadId": "abc", "role": "R"},
                }
            )
        ),
    )

    def orphan_role(doc: Doc) -> None:
        doc.schemas().goods(2)
        doc.good_role(f"G-{doc.number:02d}-1", 3)
        doc.state()
        doc.bad(
            {
                "type": "RECORD",
                "stream": "opportunity_roles",
                "record": {"externalOpportunityId": "B-NEVER", "leadId": 4, "role": "Champion"},
            }
        )
        doc.goods(1)
        doc.state()

    reg(
        "role_opportunity_never_comes",
        "a role whose opportunity is never written",
        ["bad_rejected"],
        orphan_role,
    )
    reg("amount_text", 'amount "lots"', REJECT, around(lambda d: d.bad_opp(_opp("B-1", amount="lots"))))
    reg(
        "probability_fraction",
        "probability 12.5 for an integer field",
        REJECT,
        around(lambda d: d.bad_opp(_opp("B-1", probability=12.5))),
    )
    reg("boolean_text", 'isWon "yes"', REJECT, around(lambda d: d.bad_opp(_opp("B-1", isWon="yes"))))
    reg("name_object", 'name {"a": 1}', REJECT, around(lambda d: d.bad_opp(_opp("B-1", name={"a": 1}))))
    reg(
        "nan",
        "amount NaN (bare JSON token); the target must refuse it, a real Marketo might store anything",
        REJECT,
        by_target(lambda d: d.bad(opp_line(b'"externalOpportunityId": "B-1", "name": "x", "amount": NaN'))),
    )
    reg(
        "infinity",
        "amount -Infinity; the target must refuse it, a real Marketo might store anything",
        REJECT,
        by_target(
            lambda d: d.bad(opp_line(b'"externalOpportunityId": "B-1", "name": "x", "amount": -Infinity'))
        ),
    )
    reg(
        "huge_number",
        "amount 1e400; the target must refuse it, a real Marketo might store anything",
        REJECT,
        by_target(lambda d: d.bad(opp_line(b'"externalOpportunityId": "B-1", "name": "x", "amount": 1e400'))),
    )
    reg(
        "huge_string",
        "name of 1.1 MB (over the 1 MB body limit)",
        REJECT,
        around(lambda d: d.bad_opp(_opp("B-1", name="n" * 1_100_000))),
    )

    def deep(doc: Doc) -> None:
        nested = "[" * 100_000 + "]" * 100_000
        line = '{"type": "RECORD", "stream": "opportunities", "record": {"externalOpportunityId": "B-1", '
        line += '"name": "x", "description": %s}}'
        around(lambda d: d.bad((line % nested).encode()))(doc)

    reg("deep_nesting", "a value nested 100,000 arrays deep", REJECT, deep)

    def duplicate_keys(doc: Doc) -> None:
        doc.bad_statuses = ["rejected", "created"]
        around(
            lambda d: d.bad(
                opp_line(b'"externalOpportunityId": "B-1", "externalOpportunityId": "B-2", "name": "x"')
            )
        )(doc)

    reg(
        "duplicate_json_keys",
        "one record with externalOpportunityId twice",
        ["bad_rejected", "all_written", "run_failed"],
        duplicate_keys,
    )
    reg(
        "invalid_utf8",
        "bytes \\xff\\xfe inside a string",
        REJECT,
        around(lambda d: d.bad(opp_line(b'"externalOpportunityId": "B-1", "name": "a\xff\xfeb"'))),
    )

    def nul(doc: Doc) -> None:
        doc.bad_statuses = ["rejected", "created"]  # valid JSON text; Marketo's docs do not say
        around(lambda d: d.bad_opp(_opp("B-1", name="a\u0000b")))(doc)

    reg("nul_in_value", "name containing U+0000", ["bad_rejected", "all_written", "run_failed"], nul)

    def crlf(doc: Doc) -> None:
        doc.schemas().goods(3)
        doc.state()
        doc.lines = [line + b"\r" for line in doc.lines]

    reg("crlf_line_ends", "every line ends with CR LF", ["all_written"], crlf)

    def empty_lines(doc: Doc) -> None:
        doc.schemas()
        doc.raw(b"")
        doc.goods(2)
        doc.raw(b"")
        doc.raw(b"")
        doc.goods(1)
        doc.state()

    reg("empty_lines", "empty lines between messages", ["all_written", "run_failed"], empty_lines)

    def blank_lines(doc: Doc) -> None:
        doc.schemas().goods(2)
        doc.raw(b"   \t ")
        doc.goods(1)
        doc.state()

    reg("whitespace_lines", "a line of spaces and a tab", ["all_written", "run_failed"], blank_lines)

    def truncated(doc: Doc) -> None:
        doc.schemas().goods(4)
        doc.state()
        doc.bad(OPP_LINE_START + b'"externalOpportunityId": "B-1", "na')

    reg("truncated_last_line", "the last line cut off mid-record, no newline", REJECT, truncated)

    def no_newline(doc: Doc) -> None:
        doc.schemas().goods(3)
        doc.state()
        doc.good_opp()

    reg("no_final_newline", "the last line (a good record) has no newline", ["all_written"], no_newline)

    def state_first(doc: Doc) -> None:
        doc.state()
        doc.schemas().goods(3)
        doc.state()

    reg("state_before_records", "STATE as the first message", ["all_written"], state_first)

    def state_only(doc: Doc) -> None:
        doc.state()
        doc.state()

    reg("state_only", "only STATE messages", ["all_written"], state_only)
    reg(
        "state_value_null",
        'STATE with "value": null',
        ["all_written", "run_failed"],
        around(lambda d: d.bad({"type": "STATE", "value": None}, record=False)),
    )
    reg(
        "message_is_array",
        "a line holding [1, 2, 3]",
        ["run_failed"],
        around(lambda d: d.bad(b"[1, 2, 3]", record=False)),
    )
    reg(
        "message_is_null",
        "a line holding null",
        ["run_failed"],
        around(lambda d: d.bad(b"null", record=False)),
    )
    reg(
        "message_without_type",
        "a record message without type",
        ["run_failed", "bad_rejected"],
        around(lambda d: d.bad({"stream": "opportunities", "record": _opp("B-1")})),
    )
    reg(
        "stream_null",
        "RECORD with stream null",
        REJECT,
        around(lambda d: d.bad({"type": "RECORD", "stream": None, "record": _opp("B-1")})),
    )

    def extra_field(doc: Doc) -> None:
        doc.schemas().goods(2)
        doc.good_opp(notAField="dropped")
        doc.state()

    reg("unknown_field", "a good record with a field Marketo does not have", ["all_written"], extra_field)

    def schema_change(doc: Doc) -> None:
        doc.schemas().goods(2)
        doc.msg(
            {
                **OPP_SCHEMA,
                "schema": {
                    "type": "object",
                    "properties": {
                        **OPP_SCHEMA["schema"]["properties"],
                        "region": {"type": ["string", "null"]},
                    },
                },
            }
        )
        doc.good_opp(region="EMEA")
        doc.state()

    reg(
        "schema_change_midstream",
        "a second SCHEMA for opportunities with one more property",
        ["all_written"],
        schema_change,
    )
    reg(
        "activate_version",
        "an ACTIVATE_VERSION message",
        ["all_written", "run_failed"],
        around(
            lambda d: d.bad(
                {"type": "ACTIVATE_VERSION", "stream": "opportunities", "version": 1}, record=False
            )
        ),
    )

    def batch(compression: str) -> Builder:
        def build(doc: Doc) -> None:
            doc.template = True
            doc.schemas().goods(2)
            doc.state()
            suffix = ".jsonl.gz" if compression == "gzip" else ".jsonl"
            name = f"batch/{doc.number:02d}{suffix}"
            keys = [f"G-{doc.number:02d}-b{i}" for i in range(1, 4)]
            body = "".join(
                json.dumps({"externalOpportunityId": k, "name": f"Good {k}"}) + "\n" for k in keys
            ).encode()
            doc.extra_files[name] = gzip.compress(body, mtime=0) if compression == "gzip" else body
            line = doc.bad(
                {
                    "type": "BATCH",
                    "stream": "opportunities",
                    "encoding": {"format": "jsonl", "compression": compression},
                    "manifest": [f"file://@DIR@/{name}"],
                },
                record=False,
            )
            doc.good += [
                {
                    "line": line,
                    "stream": "opportunities",
                    "key": {"externalOpportunityId": k},
                    "name": f"Good {k}",
                }
                for k in keys
            ]
            doc.goods(1)
            doc.state()

        return build

    reg(
        "batch_jsonl",
        "a BATCH message with a JSONL file of 3 records",
        ["all_written", "run_failed"],
        batch("none"),
    )
    reg(
        "batch_gzip",
        "a BATCH message with a gzipped JSONL file of 3 records",
        ["all_written", "run_failed"],
        batch("gzip"),
    )

    def batch_missing(doc: Doc) -> None:
        doc.template = True
        around(
            lambda d: d.bad(
                {
                    "type": "BATCH",
                    "stream": "opportunities",
                    "encoding": {"format": "jsonl", "compression": "none"},
                    "manifest": ["file://@DIR@/batch/missing.jsonl"],
                },
                record=False,
            )
        )(doc)

    reg("batch_missing_file", "a BATCH message whose file does not exist", ["run_failed"], batch_missing)

    def same_key_twice(doc: Doc) -> None:
        doc.schemas().goods(2)
        doc.state()
        eid = f"G-{doc.number:02d}-1"
        line = doc.msg(
            {
                "type": "RECORD",
                "stream": "opportunities",
                "record": {"externalOpportunityId": eid, "name": "Renamed"},
            }
        )
        doc.good[0].update(name="Renamed", times=2)
        doc.bad_lines = []
        doc.bad_line = line
        doc.state()

    reg("same_key_twice", "one key twice; the later name must win", ["all_written"], same_key_twice)


def main() -> None:
    register_items()
    CORPUS.mkdir(parents=True, exist_ok=True)
    for old in CORPUS.glob("*.singer"):
        old.unlink()
    index = []
    for number, (name, description, acceptable, build) in enumerate(ITEMS, start=1):
        doc = Doc(number, name, description, acceptable)
        build(doc)
        text = b"\n".join(doc.lines)
        if name not in ("truncated_last_line", "no_final_newline"):
            text += b"\n"
        (CORPUS / doc.file).write_bytes(text)
        for extra, data in doc.extra_files.items():
            (CORPUS / extra).parent.mkdir(exist_ok=True)
            (CORPUS / extra).write_bytes(data)
        index.append(doc.index_entry())
    (CORPUS / "index.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    print(f"{len(index)} corpus files in {CORPUS}")


if __name__ == "__main__":
    main()
