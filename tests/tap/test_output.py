"""The tap's two fast paths change speed, not output.

`TapWriter` (msgspec, gathered writes) must write the bytes singer-sdk's own writer writes, in
the same order; `reader(field)` must return what `from_api` returns. The last test runs the tap
command against the sandbox as shipped and as singer-sdk would run it without either speed-up
(its writer, its type conformance) and compares the two outputs byte for byte.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum, IntEnum
from pathlib import Path
from typing import Any

import pytest
from singer_sdk import Stream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.singerlib import (
    ActivateVersionMessage,
    RecordMessage,
    SchemaMessage,
    StateMessage,
)
from singer_sdk.singerlib.encoding.simple import Message, SimpleSingerWriter

from marketo_api import FieldDescription, from_api
from marketo_api.datatypes import INTEGER_TYPES, KNOWN_TYPES, NUMBER_TYPES, STRING_TYPES, reader
from marketo_sandbox import Sandbox, SandboxConfig
from tap_marketo_opps.output import TapWriter, encode_message
from tap_marketo_opps.streams import MarketoRecordStream
from tap_marketo_opps.tap import TapMarketoOpps
from tap_marketo_opps.testing import discover, select
from tests.support import paths

# ---- the writer --------------------------------------------------------------------------------


def _stdout_bytes(write: Callable[[], None]) -> bytes:
    """What `write` sends to a UTF-8 stdout that has a binary layer, as the real one does."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    saved = sys.stdout
    sys.stdout = stream
    try:
        write()
    finally:
        sys.stdout = saved
    stream.flush()
    return raw.getvalue()


def _outcome(write: Callable[[], None]) -> bytes | type[BaseException]:
    try:
        return _stdout_bytes(write)
    except Exception as exc:
        return type(exc)


def sdk_bytes(message: Message) -> bytes | type[BaseException]:
    """singer-sdk 0.54's default writer (`singer_sdk.singerlib.messages.SingerWriter`)."""
    return _outcome(lambda: SimpleSingerWriter().write_message(message))


def tap_bytes(message: Message) -> bytes | type[BaseException]:
    def write() -> None:
        writer = TapWriter()
        writer.write_message(message)
        writer.flush()

    return _outcome(write)


class Colour(Enum):
    RED = "red"


class Level(IntEnum):
    HIGH = 2


class Text(str):
    """A str subclass: msgspec and simplejson need not agree on it."""


EXTRACTED = dt.datetime(2024, 1, 31, 10, 0, 0, 123456, tzinfo=dt.timezone.utc)
EXTRACTED_OFFSET = dt.datetime(2024, 1, 31, 11, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))

VALUES: dict[str, Any] = {
    "ascii": "Chairs",
    "empty": "",
    "e-acute": "Café",
    "cjk": "東京オフィス",
    "emoji": "deal 😀",
    "emoji-only": "🎯",
    "greek": "Ελληνικά",
    "line-separator": "a\u2028b\u2029c",
    "bom": "\ufeffx",
    "del": "a\x7fb",
    "nul": "\x00",
    "controls": "".join(chr(c) for c in range(32)),
    "escapes": 'tab\tnl\ncr\r bs\b ff\f "q" \\ /',
    "html": "<a href='x'>&amp;</a>",
    "lone-surrogate": "\ud800",
    "low-surrogate": "x\udfffy",
    "surrogate-pair-text": "\U0001f600",
    "zero": 0,
    "int": 1604,
    "negative-int": -7,
    "int32-max": 2**31 - 1,
    "int64-max": 2**63 - 1,
    "int64-min": -(2**63),
    "uint64-max": 2**64 - 1,
    "beyond-uint64": 2**64,
    "huge-int": 10**40,
    "huge-negative-int": -(10**40),
    "decimal": Decimal("1604.47"),
    "decimal-trailing-zeros": Decimal("1.50"),
    "decimal-1E+16": Decimal("1E+16"),
    "decimal-1.0E+3": Decimal("1.0E+3"),
    "decimal-0.000001": Decimal("0.000001"),
    "decimal-1E-7": Decimal("0.0000001"),
    "decimal-0E-7": Decimal("0E-7"),
    "decimal-negative-zero": Decimal("-0"),
    "decimal-negative-zero-scaled": Decimal("-0.00"),
    "decimal-long": Decimal("123456789012345678901234567890.123456789"),
    "decimal-tiny": Decimal("-1E-400"),
    "decimal-vast": Decimal("9E+999999"),
    "decimal-nan": Decimal("NaN"),
    "decimal-snan": Decimal("sNaN"),
    "decimal-infinity": Decimal("Infinity"),
    "decimal-minus-infinity": Decimal("-Infinity"),
    "none": None,
    "true": True,
    "false": False,
    "float": 1.5,
    "float-1e16": 1e16,
    "float-nan": float("nan"),
    "float-infinity": float("inf"),
    "datetime": dt.datetime(2024, 1, 31, 10, 0, tzinfo=dt.timezone.utc),
    "date": dt.date(2024, 1, 31),
    "enum": Colour.RED,
    "int-enum": Level.HIGH,
    "str-subclass": Text("é"),
    "nested-dict": {"a": 1, "b": "é", "c": [Decimal("1.5"), None]},
    "nested-list": [1, "two", None, True, Decimal("1E+16")],
    "empty-dict": {},
    "empty-list": [],
}

RECORD_KEYS: dict[str, Any] = {
    "key-non-ascii": "名前",
    "key-del": "a\x7f",
    "key-int": 1,
    "key-huge-int": 2**70,
    "key-bool": True,
    "key-none": None,
    "key-float": 1.5,
    "key-float-1e16": 1e16,
    "key-float-nan": float("nan"),
    "key-decimal": Decimal("1E+16"),
    "key-enum": Colour.RED,
    "key-int-enum": Level.HIGH,
    "key-date": dt.date(2024, 1, 31),
    "key-bytes": b"x",
    "key-str-subclass": Text("k"),
}


def _record_messages() -> Iterator[Any]:
    for name, value in VALUES.items():
        for label, extracted in (("", None), ("+time", EXTRACTED), ("+offset-time", EXTRACTED_OFFSET)):
            yield pytest.param(
                RecordMessage(stream="opportunities", record={"k": value}, time_extracted=extracted),
                id=f"{name}{label}",
            )
    for name, key in RECORD_KEYS.items():
        yield pytest.param(RecordMessage(stream="opportunities", record={key: 1}), id=name)
    tap_like = {
        "marketoGUID": "dff23271-f996-47d7-984f-f2676861b5fa",
        "name": "Chairs",
        "amount": Decimal("1604.47"),
        "probability": 40,
        "isWon": False,
        "closeDate": "2024-01-31",
        "updatedAt": "2024-01-03T16:40:12+00:00",
        "description": None,
    }
    yield pytest.param(RecordMessage(stream="opportunities", record=tap_like), id="tap-record")
    yield pytest.param(
        RecordMessage(
            stream="opportunities", record=tap_like, version=1706695200000, time_extracted=EXTRACTED
        ),
        id="tap-record+version+time",
    )
    yield pytest.param(
        RecordMessage(stream="opportunities", record={**tap_like, "name": "Café 東京 😀"}),
        id="tap-record-non-ascii",
    )
    yield pytest.param(RecordMessage(stream="opportunités", record={"a": 1}), id="non-ascii-stream")
    yield pytest.param(RecordMessage(stream="s", record={"a": 1}, version=2**70), id="huge-version")
    yield pytest.param(RecordMessage(stream="s", record={}), id="empty-record")
    yield pytest.param(RecordMessage(stream="s", record=dict.fromkeys("abc", "x")), id="many-keys")


def _other_messages() -> Iterator[Any]:
    schema = {
        "type": "object",
        "properties": {"name": {"type": ["string", "null"], "description": "Nom é"}},
    }
    yield pytest.param(SchemaMessage("opportunities", schema, ["marketoGUID"], ["updatedAt"]), id="schema")
    yield pytest.param(SchemaMessage("s", {"type": "object", "properties": {}}), id="schema-bare")
    state = {
        "bookmarks": {
            "opportunities": {"replication_key_value": "2024-01-03T16:40:12+00:00"},
            "key_batches": {"checkpoint": {"batches_done": 3, "note": "é\x7f\ud800", "n": Decimal("1.5")}},
        }
    }
    yield pytest.param(StateMessage(state), id="state")
    yield pytest.param(StateMessage({}), id="state-empty")
    yield pytest.param(ActivateVersionMessage("opportunities", 1706695200000), id="activate-version")


@pytest.mark.parametrize("message", [*_record_messages(), *_other_messages()])
def test_tap_writer_writes_the_sdk_writers_bytes(message: Message) -> None:
    """Every value a record may hold (a stream map may make any of them), and every other message."""
    expected = sdk_bytes(message)
    assert tap_bytes(message) == expected
    if isinstance(expected, bytes):
        assert encode_message(message) == expected
    else:
        with pytest.raises(expected):
            encode_message(message)


def test_record_bytes_are_ascii_json_lines_like_the_sdks() -> None:
    """The comparison above means something: the SDK escapes non-ASCII, DEL and surrogates."""
    line = tap_bytes(RecordMessage(stream="s", record={"k": "é\x7f\ud800😀"}))
    assert line == b'{"type":"RECORD","stream":"s","record":{"k":"\\u00e9\\u007f\\ud800\\ud83d\\ude00"}}\n'


def test_state_waits_for_the_records_before_it_and_flush_sends_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RECORD lines are gathered; a STATE writes them out first, and flush() writes the rest."""
    path = tmp_path / "stdout"
    record = [RecordMessage(stream="s", record={"n": n}) for n in range(3)]
    state = StateMessage({"bookmarks": {"s": {"n": 1}}})
    with path.open("w", encoding="utf-8") as out:
        monkeypatch.setattr(sys, "stdout", out)
        writer = TapWriter()
        writer.write_message(record[0])
        writer.write_message(record[1])
        assert path.read_bytes() == b"", "RECORD lines should wait in the writer's buffer"
        writer.write_message(state)
        after_state = path.read_bytes()
        writer.write_message(record[2])
        assert path.read_bytes() == after_state
        writer.flush()
        monkeypatch.undo()
    lines = [SimpleSingerWriter().format_message(m).encode() + b"\n" for m in (*record[:2], state)]
    assert after_state == b"".join(lines)
    assert path.read_bytes() == after_state + SimpleSingerWriter().format_message(record[2]).encode() + b"\n"


def test_many_records_reach_a_pipe_whole_and_in_order() -> None:
    """More than the 64 KB buffer through a real pipe: partial writes must not cut or repeat lines."""
    read_fd, write_fd = os.pipe()
    messages: list[Message] = []
    for n in range(5000):
        messages.append(RecordMessage(stream="s", record={"n": n, "text": "é" * (n % 7), "pad": "x" * 40}))
        if n % 1000 == 999:
            messages.append(StateMessage({"done": n}))
    expected = b"".join(SimpleSingerWriter().format_message(m).encode() + b"\n" for m in messages)
    received = bytearray()

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as pipe:
            received.extend(pipe.read())

    reader_thread = threading.Thread(target=drain)
    reader_thread.start()
    saved = sys.stdout
    with os.fdopen(write_fd, "w", encoding="utf-8") as out:
        sys.stdout = out
        try:
            writer = TapWriter()
            for message in messages:
                writer.write_message(message)
            writer.flush()
        finally:
            sys.stdout = saved
    reader_thread.join(timeout=30)
    assert bytes(received) == expected


# ---- reader(field) against from_api ------------------------------------------------------------

READER_VALUES: list[Any] = [
    None,
    # whole numbers, in and out of Marketo's 32-bit range, and booleans (an int subclass)
    0,
    1,
    -1,
    42,
    2**31 - 1,
    2**31,
    -(2**31) + 1,
    -(2**31),
    2**63,
    10**40,
    -(10**40),
    True,
    False,
    # numbers in other forms
    1.0,
    1.5,
    -0.0,
    1e16,
    1e-7,
    0.1,
    float("nan"),
    float("inf"),
    float("-inf"),
    Decimal("1604.47"),
    Decimal("1.50"),
    Decimal("-0"),
    Decimal("1E+16"),
    Decimal("0.000001"),
    Decimal("42"),
    Decimal("42.0"),
    Decimal("2147483648"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
    # numbers as text
    "42",
    " 42 ",
    "42.0",
    "42.5",
    "1e3",
    "1604.47",
    "-0",
    "NaN",
    "Infinity",
    "0x10",
    "1_000",
    "",
    " ",
    "abc",
    "\uff11\uff12",  # fullwidth digits
    # booleans as text
    "true",
    "false",
    "TRUE",
    "False",
    "yes",
    "1",
    "0",
    # Marketo's datetime form and its neighbours
    "2024-01-31T10:00:00Z",
    "2024-01-31T23:59:59Z",
    "2024-02-29T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-13-01T00:00:00Z",
    "2024-01-31T24:00:00Z",
    "2024-01-31T10:00:60Z",
    "2024-01-31 10:00:00Z",
    "2024-01-31t10:00:00Z",
    "2024-01-31T10:00:00z",
    "2024-01-31T10:00:0ZZ",
    "2024-01-31T10:00:00",
    "2024-01-31T10:00Z",
    "20240131T100000Z",
    "20240131T100000.000Z",
    "20240131T100000.500Z",
    "2024-W05-3T10:00:00Z",
    "2024-01-31T10:00:00.000Z",
    "2024-01-31T10:00:00.5Z",
    "2024-01-31T10:00:00.123456Z",
    "2024-01-31T10:00:00,5Z",
    "2024-01-31T10:00:00+00:00",
    "2024-01-31T10:00:00+0000",
    "2024-01-31T10:00:00Z+0000",
    "2024-01-31T11:00:00+01:00",
    "2024-01-31T05:00:00-05:00",
    "2024-01-31T10:00:00-0530",
    "2024-01-31T10:00+01Z",
    " 2024-01-31T10:00:00Z",
    "2024-01-31T10:00:00Z ",
    "\uff12\uff10\uff12\uff14-01-31T10:00:00Z",  # fullwidth digits
    "2024-01-31T10:00:00\x00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "xxxx-xx-xxTxx:xx:xxZ",
    "2024-01-01Tjunk",
    # dates
    "2024-01-31",
    "2024-02-30",
    "2024-1-31",
    "20240131",
    "2024-W05-3",
    "2024-W05",
    "2024-031",
    "2024-01-31T",
    " 2024-01-31",
    "2024-01-31 ",
    "2024/01/31",
    "31-01-2024",
    "0000-01-01",
    "\uff12\uff10\uff12\uff14-01-31",
    # text
    "Chairs",
    "Café 東京 😀",
    "\ud800",
    "a\x7fb",
    # other Python values a caller might pass
    dt.datetime(2024, 1, 31, 10, 0),
    dt.datetime(2024, 1, 31, 10, 0, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 1, 31, 11, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    dt.date(2024, 1, 31),
    Text("2024-01-31"),
    Text("2024-01-31T10:00:00Z"),
    Text("42"),
    Level.HIGH,
    Colour.RED,
    b"42",
    [1],
    {"a": 1},
    object,
]

DATA_TYPES = sorted(KNOWN_TYPES | {"formula", "someFutureType"})


def _read(read: Callable[[Any], Any], value: Any) -> tuple[Any, ...]:
    """Result type and repr (repr tells Decimal('1.50') from Decimal('1.5')), or the exception type."""
    try:
        result = read(value)
    except Exception as exc:
        return ("raised", type(exc))
    return ("returned", type(result), repr(result))


def test_data_types_cover_every_marketo_type() -> None:
    """DATA_TYPES below is not a stale copy: it holds every type datatypes.py knows."""
    assert STRING_TYPES | INTEGER_TYPES | NUMBER_TYPES | {"boolean", "date", "datetime"} <= set(DATA_TYPES)


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_reader_returns_what_from_api_returns(data_type: str) -> None:
    """Same value, type and exception class as from_api for every value, right type or wrong."""
    field = FieldDescription(name="f", display_name="F", data_type=data_type, length=255, updateable=True)
    read = reader(field)
    differences = [
        (value, expected, got)
        for value in READER_VALUES
        if (expected := _read(lambda v: from_api(field, v), value)) != (got := _read(read, value))
    ]
    assert differences == []


# ---- the tap command, as shipped and as singer-sdk would run it --------------------------------


class SdkDefaultTap(TapMarketoOpps):
    """The tap without its two speed-ups: singer-sdk's writer and its type conformance.

    The conformance level comes from SDK_CONFORMANCE (a TypeConformanceLevel name); each record
    stream instance gets it, so the stream class itself is left as it is.
    """

    # TapMarketoOpps declares no wider type than its own writer's.
    message_writer_class = SimpleSingerWriter  # type: ignore[assignment]

    def discover_streams(self) -> list[Stream]:
        level = TypeConformanceLevel[os.environ["SDK_CONFORMANCE"]]
        streams = super().discover_streams()
        for stream in streams:
            if isinstance(stream, MarketoRecordStream):
                stream.TYPE_CONFORMANCE_LEVEL = level
        return streams


WINDOW = 1.0
LEADS = 3000
NON_ASCII_TEXT = [
    "Café Zürich",
    "東京オフィス 商談",
    "Déjà vu 😀 deal",
    "naïve — “quoted” \u2018text\u2019 …",
    "Ελληνικά / Русский / עברית",
    "line\u2028separator\u2029",
    "controls \x01\x1f and DEL \x7f",
    'tab\tnewline\n "quote" back\\slash',
]


@dataclass
class Seeded:
    sandbox: Sandbox
    opportunities: list[str]  # externalOpportunityIds given non-ASCII text
    roles: list[str]  # role names added, non-ASCII


def _seed_non_ascii(sb: Sandbox) -> Seeded:
    """Non-ASCII names, descriptions and notes on opportunities of the range, and roles named so."""
    roles = [r for r in sb.store.roles() if 1 <= r["leadId"] <= LEADS]
    ext_ids = sorted({r["externalOpportunityId"] for r in roles})[: len(NON_ASCII_TEXT) * 3]
    updates = [
        {
            "externalOpportunityId": ext,
            "name": NON_ASCII_TEXT[n % len(NON_ASCII_TEXT)],
            "description": " · ".join(NON_ASCII_TEXT[: n % len(NON_ASCII_TEXT) + 1]),
            "internalNotes": NON_ASCII_TEXT[-1 - n % len(NON_ASCII_TEXT)],
        }
        for n, ext in enumerate(ext_ids)
    ]
    results = sb.store.sync("opportunities", "updateOnly", "dedupeFields", updates, crm_sync=False)
    assert [r["status"] for r in results] == ["updated"] * len(updates), results
    role_names = ["Décideur", "決裁者 🎯", "Ärztin"]
    new_roles = [
        {"externalOpportunityId": ext, "leadId": 1 + n * 97, "role": role_names[n % len(role_names)]}
        for n, ext in enumerate(ext_ids)
    ]
    results = sb.store.sync("roles", "createOnly", "dedupeFields", new_roles, crm_sync=False)
    assert [r["status"] for r in results] == ["created"] * len(new_roles), results
    return Seeded(sb, ext_ids, role_names)


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    config = SandboxConfig.small(leads=LEADS, opportunities=1000, rate_window_seconds=WINDOW)
    with Sandbox(config) as sb:
        yield _seed_non_ascii(sb)


def _tap_command() -> list[str]:
    """The installed console script, else `python -m tap_marketo_opps` (as tests/tap/test_cli.py)."""
    script = Path(sys.executable).parent / "tap-marketo-opps"
    if script.exists():
        return [str(script)]
    found = shutil.which("tap-marketo-opps")
    return [found] if found else [sys.executable, "-m", "tap_marketo_opps"]


SDK_DEFAULT_COMMAND = [
    sys.executable,
    "-c",
    f"import sys; sys.path.insert(0, {str(paths.ROOT)!r}); "
    "from tests.tap.test_output import SdkDefaultTap; SdkDefaultTap.cli()",
]


@pytest.fixture(scope="module")
def tap_files(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tap_output")
    settings = {
        **seeded.sandbox.connection_settings(),
        "rate_window_seconds": WINDOW,
        "lead_id_range": {"start": 1, "end": LEADS},
    }
    config = folder / "config.json"
    config.write_text(json.dumps(settings))
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps(select(discover(settings), ["opportunities", "opportunity_roles"])))
    return config, catalog


def _sync(command: list[str], files: tuple[Path, Path], **env: str) -> bytes:
    config, catalog = files
    result = subprocess.run(
        [*command, "--config", str(config), "--catalog", str(catalog)],
        check=False,
        capture_output=True,
        timeout=300,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def shipped_output(tap_files: tuple[Path, Path]) -> bytes:
    return _sync(_tap_command(), tap_files)


# Clock readings, which differ between any two runs: each record's emission time, and the run's
# start in STATE (the SDK's replication_key_signpost, the tap's checkpoint started_at).
_CLOCK = re.compile(rb'"(time_extracted|replication_key_signpost|started_at)":"\d{4}-\d\d-\d\dT[^"]*"')


def _without_clock(output: bytes) -> bytes:
    return _CLOCK.sub(rb'"\1":"-"', output)


@pytest.mark.parametrize("level", ["RECURSIVE", "ROOT_ONLY"])
def test_sdk_default_tap_runs_without_either_speed_up(
    tap_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    """The comparison below would prove nothing if SdkDefaultTap still ran the shipped writer or level."""
    assert Stream.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.RECURSIVE  # the SDK's default
    assert MarketoRecordStream.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE  # the shipped one
    monkeypatch.setenv("SDK_CONFORMANCE", level)
    config, catalog = tap_files
    tap = SdkDefaultTap(
        config=json.loads(config.read_text()),
        catalog=json.loads(catalog.read_text()),
        parse_env_config=False,
    )
    assert type(tap.message_writer) is SimpleSingerWriter
    record_streams = [s for s in tap.streams.values() if isinstance(s, MarketoRecordStream)]
    assert {s.name for s in record_streams} == {"opportunities", "opportunity_roles"}
    assert {s.TYPE_CONFORMANCE_LEVEL for s in record_streams} == {TypeConformanceLevel[level]}
    assert MarketoRecordStream.TYPE_CONFORMANCE_LEVEL is TypeConformanceLevel.NONE  # class left alone


@pytest.mark.parametrize("level", ["RECURSIVE", "ROOT_ONLY"])
def test_tap_output_is_byte_identical_to_the_sdk_writer_and_conformance(
    seeded: Seeded, tap_files: tuple[Path, Path], shipped_output: bytes, level: str
) -> None:
    """Same bytes as singer-sdk's writer and conformance give, for thousands of records.

    RECURSIVE is the SDK's default TYPE_CONFORMANCE_LEVEL (ROOT_ONLY is checked too). Only clock
    readings are normalised, as two runs of the same tap differ there too: time_extracted (each
    record's emission) and, in STATE, replication_key_signpost and the checkpoint's started_at
    (the run's start).
    """
    sdk_output = _sync(SDK_DEFAULT_COMMAND, tap_files, SDK_CONFORMANCE=level)
    messages = [json.loads(line) for line in shipped_output.splitlines()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    assert len(records) >= 3000
    assert sum(m["type"] == "STATE" for m in messages) >= 2
    # The seeded non-ASCII text is in the output, as the SDK's \u escapes.
    names = {r.get("name") for r in records}
    assert set(NON_ASCII_TEXT) <= names
    assert set(seeded.roles) <= {r.get("role") for r in records}
    assert shipped_output.isascii()
    assert b"\\u6771\\u4eac" in shipped_output  # 東京
    assert set(_CLOCK.findall(shipped_output)) == {
        b"time_extracted",
        b"replication_key_signpost",
        b"started_at",
    }
    assert _without_clock(shipped_output) == _without_clock(sdk_output)
