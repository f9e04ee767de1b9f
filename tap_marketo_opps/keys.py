"""Key sources: the values that select which opportunities and roles a run reads.

Marketo cannot list opportunities; every query names up to 300 exact values of one searchable
field. A key source is a re-iterable stream of such values plus the object and field they are
matched against. Values are never held in memory as a whole: lists come from the config,
ranges are generated, files are read line by line (a plain list or a CSV with a header).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from singer_sdk.exceptions import ConfigValidationError

from marketo_api import MarketoObject

KeyValue = str | int

EXTERNAL_OPPORTUNITY_ID = "externalOpportunityId"
LEAD_ID = "leadId"

# Names a CSV header (or the header line of a one-column file) may give the key column,
# compared case-insensitively with "_", "-" and spaces removed.
_EXTERNAL_ID_COLUMNS = ("externalopportunityid", "externalopportunity", "opportunityid", "id")
_LEAD_ID_COLUMNS = ("leadid", "id", "lead")
_DELIMITERS = (",", "\t", ";", "|")
_LOG = logging.getLogger("tap-marketo-opps")
_WARNED: set[Path] = set()

#: The `object` of a filter: each object's snake name.
FILTER_OBJECTS: dict[str, MarketoObject] = {obj.snake_name: obj for obj in MarketoObject}


@dataclass(frozen=True)
class KeySource:
    """One configured source of keys, matched against `field` of `obj`."""

    name: str  # the setting it comes from, e.g. "lead_ids_file" or "filters[0]"
    obj: MarketoObject
    field: str
    description: str  # for the log, e.g. "lead ids 1..250000"
    _values: Callable[[], Iterator[KeyValue]]

    def values(self) -> Iterator[KeyValue]:
        """A fresh iterator over the keys, in the configured order."""
        return self._values()

    def scan(self) -> tuple[int, str]:
        """Count the keys and fingerprint them in one streaming pass (constant memory)."""
        digest = hashlib.sha256(f"{self.name}\0{self.obj.value}\0{self.field}\0".encode())
        count = 0
        for value in self.values():
            digest.update(f"{type(value).__name__}:{value}\n".encode())
            count += 1
        return count, digest.hexdigest()


def key_sources(config: Mapping[str, Any], *, check_files: bool = True) -> list[KeySource]:
    """The configured key sources, in the fixed order they run in.

    Raises ConfigValidationError naming the setting when one is malformed. With `check_files`,
    key files must exist; their content is validated as it is read.
    """
    found = [
        _list_source(config, "external_opportunity_ids", _EXTERNAL_IDS),
        _file_source(config, "external_opportunity_ids_file", _EXTERNAL_IDS, check=check_files),
        _list_source(config, "lead_ids", _LEAD_IDS),
        _file_source(config, "lead_ids_file", _LEAD_IDS, check=check_files),
        _range_source(config),
    ]
    sources = [source for source in found if source is not None]
    for index, spec in enumerate(config.get("filters") or ()):
        sources.append(_filter_source(index, spec))
    return sources


@dataclass(frozen=True)
class _KeyKind:
    """What a list or file of keys holds: externalOpportunityIds or lead ids."""

    obj: MarketoObject
    field: str
    noun: str  # for the log
    parse: Callable[[Any, str], KeyValue]  # (value, where) -> key; raises naming `where`
    columns: Sequence[str]  # accepted key-column names in a file's header


def _list_source(config: Mapping[str, Any], setting: str, kind: _KeyKind) -> KeySource | None:
    raw = config.get(setting)
    if not raw:
        return None
    values = [kind.parse(value, setting) for value in raw]
    description = f"{len(values)} {kind.noun} from the config"
    return KeySource(setting, kind.obj, kind.field, description, partial(iter, values))


def _file_source(config: Mapping[str, Any], setting: str, kind: _KeyKind, *, check: bool) -> KeySource | None:
    value = config.get(setting)
    if not value:
        return None
    path = _key_file(value, setting, check=check)
    where = str(path)

    def parse(text: str) -> KeyValue:
        return kind.parse(text, where)

    read = partial(read_key_file, path, kind.columns, parse)
    return KeySource(setting, kind.obj, kind.field, f"{kind.noun} from {path}", read)


def _range_source(config: Mapping[str, Any]) -> KeySource | None:
    lead_range = config.get("lead_id_range")
    if not lead_range:
        return None
    start, end = _range(lead_range)
    return KeySource(
        "lead_id_range",
        MarketoObject.OPPORTUNITY_ROLE,
        LEAD_ID,
        f"lead ids {start}..{end}",
        partial(_range_values, start, end),
    )


def _filter_source(index: int, spec: Any) -> KeySource:
    name = f"filters[{index}]"
    if not isinstance(spec, Mapping):
        raise _invalid(name, "each filter is an object with object, field and values")
    object_name = spec.get("object")
    obj = FILTER_OBJECTS.get(str(object_name))
    if obj is None:
        raise _invalid(name, f"object must be one of {sorted(FILTER_OBJECTS)}, got {object_name!r}")
    field = spec.get("field")
    if not isinstance(field, str) or not field.strip():
        raise _invalid(name, "field must name a searchable field, e.g. externalCompanyId")
    raw_values = spec.get("values")
    if not isinstance(raw_values, Sequence) or isinstance(raw_values, str) or not raw_values:
        raise _invalid(name, "values must be a non-empty list")
    values = [_filter_value(v, name) for v in raw_values]
    return KeySource(
        name,
        obj,
        field.strip(),
        f"{len(values)} values of {obj.label} field {field.strip()}",
        partial(iter, values),
    )


def read_key_file(
    path: Path, column_names: Sequence[str], parse: Callable[[str], KeyValue]
) -> Iterator[KeyValue]:
    """Keys from a file: one value a line, or a CSV with a header row naming the key column.

    The first line is a header only if it names a known key column (in `column_names`,
    compared after `_normal`). If one of its cells does, the file is a CSV (delimiter: comma,
    tab, semicolon or pipe) and the keys are that column. Otherwise it is a one-column file,
    header line or not: each line is one value, read as a CSV field (surrounding quotes are
    removed, `""` is a quote), so values may contain tabs, semicolons or pipes. A first line
    that holds a delimiter but neither names a key column nor is a valid key is taken for a
    CSV header without a key column and refused. Blank lines and blank cells are skipped; the
    file is read lazily, one line at a time. A file that is not UTF-8, or a CSV row whose
    quoting is broken or whose value spans lines, is refused: skipping what cannot be read
    would silently drop keys.
    """
    try:
        yield from _read_key_file(path, column_names, parse)
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start : exc.start + 1].hex()
        raise _invalid(str(path), f"is not UTF-8 text (byte 0x{byte}); save it as UTF-8") from None


def _read_key_file(
    path: Path, column_names: Sequence[str], parse: Callable[[str], KeyValue]
) -> Iterator[KeyValue]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        first = handle.readline()
        if not first:
            return
        lines: Iterable[str] = itertools.chain([first], handle)
        for delimiter in _DELIMITERS:
            if delimiter in first:
                header = next(csv.reader([first], delimiter=delimiter), [])
                column = _key_column(header, column_names)
                if column is not None and len(header) > 1:
                    yield from _csv_column(lines, path, delimiter, column, parse)
                    return
        single = _single_value(first, path, 1)
        if single is None:  # several comma-separated cells, none of them a key column
            raise _no_key_column(path, next(csv.reader([first]), []), column_names)
        if _normal(single) in column_names:
            lines = handle  # skip the header line of a one-column file
        elif any(d in first for d in _DELIMITERS):
            if not _parses(single, parse):
                raise _no_key_column(path, next(csv.reader([first]), []), column_names)
            _warn_once(
                path,
                f"{path}: the first line {single!r} names no key column, so the file is read as "
                "one value a line (delimiters included); if it is a CSV, name the key column in "
                f"its header, one of {list(column_names)}",
            )
        yield from _one_column(lines, path, parse)


def _warn_once(path: Path, message: str) -> None:
    """Log `message` once per file and process (the file is read for the scan and the run)."""
    if path not in _WARNED:
        _WARNED.add(path)
        _LOG.warning(message)


def _parses(text: str, parse: Callable[[str], KeyValue]) -> bool:
    try:
        parse(text)
    except ConfigValidationError:
        return False
    return True


def _csv_column(
    lines: Iterable[str], path: Path, delimiter: str, column: int, parse: Callable[[str], KeyValue]
) -> Iterator[KeyValue]:
    # strict: an unclosed quote is an error, not a field that swallows the rest of the file.
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    start = 1
    try:
        next(reader)  # the header
        start = reader.line_num + 1
        for row in reader:
            if any("\n" in cell or "\r" in cell for cell in row):
                raise _invalid(
                    str(path),
                    f"the row starting at line {start} runs over lines {start}-{reader.line_num} "
                    "(a quoted value with line breaks, or a quote left open); key files need one "
                    "row a line",
                )
            start = reader.line_num + 1
            if column < len(row):
                text = row[column].strip()
                if text:
                    yield parse(text)
    except csv.Error as exc:
        raise _invalid(str(path), f"line {start}: {exc} (a quote left open?)") from None


def _one_column(lines: Iterable[str], path: Path, parse: Callable[[str], KeyValue]) -> Iterator[KeyValue]:
    for number, line in enumerate(lines, start=1):
        text = _single_value(line, path, number)
        if text is None:
            raise _invalid(
                str(path),
                f"line {line.strip()!r} has several comma-separated values; a one-column file "
                "holds one value a line (quote a value that contains a comma)",
            )
        if text:
            yield parse(text)


def _single_value(line: str, path: Path, number: int) -> str | None:
    """The one CSV field on `line`, unquoted and stripped ("" for a blank line); None if several."""
    text = line.strip()
    if not text:
        return ""
    try:
        row = next(csv.reader([text]), [])
    except csv.Error as exc:
        raise _invalid(str(path), f"line {number}: {exc}") from None
    if len(row) > 1:
        return None
    return row[0].strip() if row else ""


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in "_- ")


def _key_column(header: Sequence[str], column_names: Sequence[str]) -> int | None:
    normalized = [_normal(h) for h in header]
    for wanted in column_names:
        if wanted in normalized:
            return normalized.index(wanted)
    return None


def _no_key_column(path: Path, header: Sequence[str], column_names: Sequence[str]) -> ConfigValidationError:
    return ConfigValidationError(
        f"{path}: no key column in the CSV header {list(header)}",
        errors=[
            f"{path}: name the key column one of {list(column_names)} "
            "(case, '_' and '-' are ignored), or give a one-column file"
        ],
    )


def _key_file(value: Any, setting: str, *, check: bool) -> Path:
    path = Path(str(value)).expanduser()
    if check and not path.is_file():
        raise _invalid(setting, f"file {path} does not exist")
    return path


def _external_id(value: Any, where: str) -> str:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text:
        raise _invalid(where, f"{value!r} is not an externalOpportunityId")
    if "," in text:
        raise _invalid(where, f"{text!r} contains a comma, which Marketo's filterValues cannot carry")
    return text


def _lead_id(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise _invalid(where, f"{value!r} is not a lead id")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise _invalid(where, f"{value!r} is not a lead id (a whole number)") from None
    if number < 1:
        raise _invalid(where, f"lead id {number} must be positive")
    return number


def _filter_value(value: Any, where: str) -> KeyValue:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _invalid(where, f"{value!r}: filter values are strings or integers")
    if isinstance(value, str):
        return _external_id(value, where)
    return value


_EXTERNAL_IDS = _KeyKind(
    MarketoObject.OPPORTUNITY,
    EXTERNAL_OPPORTUNITY_ID,
    "externalOpportunityIds",
    _external_id,
    _EXTERNAL_ID_COLUMNS,
)
_LEAD_IDS = _KeyKind(MarketoObject.OPPORTUNITY_ROLE, LEAD_ID, "lead ids", _lead_id, _LEAD_ID_COLUMNS)


def _range_values(start: int, end: int) -> Iterator[KeyValue]:
    return iter(range(start, end + 1))


def _range(value: Any) -> tuple[int, int]:
    if not isinstance(value, Mapping):
        raise _invalid("lead_id_range", 'expected {"start": 1, "end": 250000}')
    start = _lead_id(value.get("start"), "lead_id_range.start")
    end = _lead_id(value.get("end"), "lead_id_range.end")
    if end < start:
        raise _invalid("lead_id_range", f"end {end} is before start {start}")
    return start, end


def _invalid(setting: str, problem: str) -> ConfigValidationError:
    message = f"{setting}: {problem}"
    return ConfigValidationError(message, errors=[message])
