"""The target decodes input lines with msgspec and hands what msgspec refuses to singer-sdk's decoder:
every line must give exactly the values, or the error and line number, of the SDK's decoder alone."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from singer_sdk.singerlib.json import deserialize_json

import target_marketo_opps.reader as reader_module
from target_marketo_opps.reader import MESSAGE_TYPES, NumberedReader
from tests.support.target import SAMPLE


class _Refusing:
    def decode(self, line: str) -> Any:
        raise msgspec.DecodeError("refused")


class SdkOnlyReader(NumberedReader):
    """The reader as it was before msgspec: every line goes to the SDK's decoder."""

    _decoder = _Refusing()  # type: ignore[assignment]


def read(reader_class: type[NumberedReader], text: str) -> tuple[str, ...]:
    """The messages read, as repr (which tells Decimal from float, True from 1, and keeps key order),
    or the error's type and message."""
    messages: list[dict] = []
    kinds = MESSAGE_TYPES
    callbacks: dict[str, Callable[[dict], None]] = dict.fromkeys(kinds, messages.append)
    try:
        reader_class().process_lines(io.StringIO(text), callbacks)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))
    return ("ok", repr(messages))


def record_line(value: str) -> str:
    return '{"type": "RECORD", "stream": "opportunities", "record": {"v": ' + value + "}}"


TRICKY_VALUES = [
    "1.5",
    "1e5",
    "1E+5",
    "-1.5E-3",
    "0e0",
    "-0.0",
    "-0",
    "1.0",
    "4.35",
    "0.30000000000000004",
    "1e400",
    "-1e-5000",
    "12345678901234567890.5",
    "1" + "0" * 400 + ".5",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "9" * 4300,
    "-" + "9" * 4300,  # msgspec refuses it, Python's int accepts it
    "NaN",
    "Infinity",
    "-Infinity",
    '"\\ud800"',
    '"BAD-\\udc00x"',
    '"\ud800"',  # an unescaped lone surrogate (as decoded with surrogateescape)
    '"\\ud83d\\ude00"',
    '"\\u0000\\u001f"',
    '"\u00e9\\u00e9\u2028"',
    '"\\/\\b\\f\\n\\r\\t\\"\\\\"',
    "true",
    "false",
    "null",
    "[]",
    "{}",
    '[1, {"a": [2.5, null, {"b": -3}]}]',
]
TRICKY_LINES = [
    *(record_line(value) for value in TRICKY_VALUES),
    '{"type": "RECORD", "stream": "s", "record": {"a": 1, "b": 2, "a": 3}}',  # the last duplicate wins
    '{"type": "RECORDZ", "type": "STATE", "value": {}}',
    '{"type": "RECORD", "stream": "s", "record": {"\\ud800": 1, "k\\udfff": "v"}}',
    ' \t{"type": "STATE", "value": {"bookmarks": {}}}\r',
]


@pytest.mark.parametrize("line", TRICKY_LINES)
def test_a_tricky_line_decodes_to_exactly_what_the_sdk_decoder_gives(line: str) -> None:
    expected = repr([deserialize_json(line)])
    assert read(NumberedReader, line + "\n") == ("ok", expected)
    assert read(SdkOnlyReader, line + "\n") == ("ok", expected)


def test_a_sample_input_decodes_as_with_the_sdk_decoder() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    assert read(NumberedReader, text) == read(SdkOnlyReader, text)
    assert read(NumberedReader, text)[0] == "ok"


def test_ordinary_lines_skip_the_sdk_decoder_and_refused_ones_reach_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """msgspec is what makes reading faster; lines it refuses must still get the SDK's answer."""
    calls: list[str] = []

    def counting(line: str) -> Any:
        calls.append(line)
        return deserialize_json(line)

    monkeypatch.setattr(reader_module, "deserialize_json", counting)
    ordinary = SAMPLE.read_text(encoding="utf-8")
    assert read(NumberedReader, ordinary)[0] == "ok"
    assert calls == []
    refused = [record_line(v) for v in ("NaN", '"\\ud800"', "-" + "9" * 4300)] + ["{nope"]
    read(NumberedReader, "".join(line + "\n" for line in refused))  # stops at the bad last line
    assert [line.rstrip("\n") for line in calls] == refused


BAD_LINES = [
    "{nope",
    '{"type": "RECORD", "stream": "opportunities", "record": {"externalOpp',
    '{"type": "RECORD",}',
    '{"type": "STATE", "value": {}} x',
    '{"type": "STATE", "value": {}}}',
    '{"type": "STATE", "value": {}}\x0b',
    '{"type": "STATE", "value": "a\tb"}',
    '{"type": "STATE", "value": "\\x"}',
    '{type: "STATE"}',
    "{'type': 'STATE'}",
    "-",
    "\u00a0{}",
    "\ufeff{}",  # a byte order mark is accepted on line 1 only
    record_line("01"),
    record_line(".5"),
    record_line("+1"),
    record_line("1."),
    record_line("1e"),
    record_line("tru"),
    record_line("nan"),
    record_line("9" * 4301),  # past Python's int digit limit: a ValueError, not a JSONDecodeError
    record_line("[" * 100_000 + "]" * 100_000),
    "[1, 2]",
    '"text"',
    "null",
    "1.5",
    '{"stream": "opportunities"}',
    '{"type": "RECORDZ"}',
]


@pytest.mark.parametrize("line", BAD_LINES)
def test_a_bad_line_fails_with_the_sdk_decoders_error_and_its_line_number(line: str) -> None:
    text = '{"type": "STATE", "value": {}}\n' + line + "\n"
    got = read(NumberedReader, text)
    assert got == read(SdkOnlyReader, text)
    assert got[:2] == ("error", "InputLineError")
    assert got[2].startswith("Input line 2 ")


def test_a_malformed_line_names_the_sdk_decoders_problem_and_column() -> None:
    assert read(NumberedReader, '{"type": "STATE", "value": {}}\n{nope\n') == (
        "error",
        "InputLineError",
        "Input line 2 is not valid JSON: Expecting property name enclosed in double quotes at column 2",
    )
    assert read(NumberedReader, record_line("NaN!") + "\n")[2] == (
        "Input line 1 is not valid JSON: Expecting ',' delimiter at column 66"
    )


def test_lines_nested_near_the_recursion_limit_succeed_or_fail_as_with_the_sdk_decoder() -> None:
    """msgspec recurses 5 frames less than json.loads; a line just too deep for json.loads must fail."""
    limit = sys.getrecursionlimit()
    outcomes = set()
    for depth in range(limit - 200, limit + 5):
        text = record_line("[" * depth + "]" * depth) + "\n"
        got = read(NumberedReader, text)
        assert got == read(SdkOnlyReader, text), depth
        outcomes.add(got[0])
    assert outcomes == {"ok", "error"}  # the range spans the depth where json.loads gives up
