"""Import bodies read: a JSON array, NDJSON or CSV of ticket records, before any check of their fields."""

from __future__ import annotations

import csv
import io
import re
from typing import Any, NamedTuple

from webapp.core import strict_json
from webapp.tickets.fields import ImportedTicket

MEDIA_TYPES = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/x-jsonlines": "ndjson",
    "text/csv": "csv",
    "application/csv": "csv",
}
FIELDS = tuple(ImportedTicket.model_fields)
NUMERIC_FIELDS = frozenset({"sentiment_score"})
# Columns whose cells hold JSON (a list or an object), as the same keys of a JSON row would.
JSON_FIELDS = frozenset({"replies", "satisfaction", "status_history"})


class RowProblem(NamedTuple):
    """A CSV row that is no ticket before its fields are looked at (its cells miscounted, a JSON cell
    that does not parse): what the report says of it. Its own type, so that no row a client sends
    can pass for one (a JSON row is a dict whatever keys it holds)."""

    message: str
    field: str | None = None


class ImportFormatError(ValueError):
    """The body is not a well-formed JSON array, NDJSON or CSV of ticket objects."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class ImportTooLarge(ValueError):
    """The body holds more rows than one import accepts."""


def format_for(content_type: str | None) -> str | None:
    """The import format a Content-Type names (parameters such as charset ignored), or None."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return MEDIA_TYPES.get(media)


def _text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"the body is not UTF-8 (byte {exc.start} is invalid)") from exc


def may_hide_text(body: bytes, fmt: str) -> bool:
    """Whether a parsed string of `body` may hold a character its text does not (a NUL, a lone surrogate).

    Text decoded as UTF-8 holds no lone surrogate: only a NUL byte in the body or a JSON escape
    (\\u....) can put either into a string, in any format (a CSV import's replies, satisfaction and
    status_history cells are JSON). Without both, the rows need no check of every string.
    """
    return b"\x00" in body or b"\\u" in body


def _too_many(max_rows: int) -> ImportTooLarge:
    return ImportTooLarge(
        f"the body holds more than {max_rows} rows; split it into several imports of at most {max_rows}"
    )


def _check_count(count: int, max_rows: int) -> None:
    if count > max_rows:
        raise _too_many(max_rows)


def _json_rows(text: str, max_rows: int) -> list[Any]:
    # The array is bounded by the body's size (IMPORT_MAX_BYTES) and its row count (checked before
    # its values are walked), as an NDJSON body's lines are: no cap on values beside them (a value
    # takes a character at least), so rows with many replies are accepted in either format.
    try:
        data = strict_json.loads(
            text, max_elements=max(strict_json.MAX_ELEMENTS, len(text)), max_items=max_rows
        )
    except strict_json.TooManyItems as exc:
        raise _too_many(max_rows) from exc
    except strict_json.JsonError as exc:
        raise ImportFormatError(f"the body is not valid JSON: {exc}", line=exc.line) from exc
    if not isinstance(data, list):
        raise ImportFormatError("a JSON import must be an array of ticket objects")
    _check_count(len(data), max_rows)
    return data


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _ndjson_rows(text: str, max_rows: int, lines: list[int]) -> list[Any]:
    rows: list[Any] = []
    # Lines end at \n, \r\n or \r only: str.splitlines() also breaks at U+2028 and other characters a
    # JSON string may hold raw, and would count lines as no editor does.
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if not line.strip():
            continue
        _check_count(len(rows) + 1, max_rows)
        try:
            rows.append(strict_json.loads(line))
        except strict_json.JsonError as exc:
            raise ImportFormatError(f"line {number} is not valid JSON: {exc}", line=number) from exc
        lines.append(number)
    return rows


def _csv_rows(text: str, max_rows: int, lines: list[int]) -> list[Any]:
    # strict: a quote left open at the end of the body is an error, not a field running to the end.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error as exc:
        raise ImportFormatError(f"line 1 is not valid CSV: {exc}", line=1) from exc
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise ImportFormatError(f"unknown CSV column {unknown[0]!r}; allowed: {', '.join(FIELDS)}", line=1)
    if len(set(names)) != len(names):
        raise ImportFormatError("a CSV column is named twice in the header", line=1)
    rows: list[Any] = []
    # The line each row starts on (a quoted cell may hold line breaks, so rows and lines part ways).
    start = reader.line_num + 1
    try:
        for cells in reader:
            first, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            _check_count(len(rows) + 1, max_rows)
            lines.append(first)
            if len(cells) != len(names):
                # A row cut short is as suspect as one too long: its missing cells are not "not given".
                rows.append(RowProblem(f"the row has {len(cells)} cells but the header {len(names)}"))
                continue
            rows.append(_row(names, cells))
    except csv.Error as exc:
        raise ImportFormatError(
            f"line {reader.line_num} is not valid CSV: {exc}", line=reader.line_num
        ) from exc
    return rows


def _row(names: list[str], cells: list[str]) -> dict[str, Any] | RowProblem:
    """A CSV row as the JSON row it stands for; an empty cell means "not given", as an absent key
    does in JSON. A JSON cell that does not parse makes the row an error row."""
    row: dict[str, Any] = {}
    for name, cell in zip(names, cells, strict=True):
        if cell == "":
            continue
        if name in JSON_FIELDS:
            try:
                row[name] = strict_json.loads(cell)
            except strict_json.JsonError as exc:
                return RowProblem(f"the {name} cell is not valid JSON: {exc}", name)
        else:
            row[name] = _cell(name, cell)
    return row


def _cell(name: str, text: str) -> Any:
    """A CSV cell as the JSON value it stands for: numbers for numeric fields (text that is not a
    number stays text, and validation says so)."""
    if name in NUMERIC_FIELDS:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def parse_rows(body: bytes, fmt: str, *, max_rows: int) -> list[Any]:
    """The records of an import body, unvalidated; raises ImportFormatError or ImportTooLarge."""
    return parse_rows_and_lines(body, fmt, max_rows=max_rows)[0]


def parse_rows_and_lines(body: bytes, fmt: str, *, max_rows: int) -> tuple[list[Any], list[int] | None]:
    """parse_rows, with the line of the body each row starts on (NDJSON and CSV: blank lines and
    cells holding line breaks make them differ from the row numbers; None for a JSON array)."""
    text = _text(body)
    lines: list[int] = []
    if fmt == "json":
        rows = _json_rows(text, max_rows)
    elif fmt == "ndjson":
        rows = _ndjson_rows(text, max_rows, lines)
    elif fmt == "csv":
        rows = _csv_rows(text, max_rows, lines)
    else:
        raise ValueError(f"unknown import format {fmt!r}")
    if not rows:
        raise ImportFormatError("the body holds no tickets")
    return rows, (lines if fmt != "json" else None)
