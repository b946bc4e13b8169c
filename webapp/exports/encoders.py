"""CSV, JSON and NDJSON as blocks of bytes: from COPY output where the table has it, else row by row.

XLSX needs a file of its own (xlsx.py).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator, Iterator
from contextlib import closing
from datetime import datetime
from typing import Any

from webapp.exports.formulas import neutralise
from webapp.exports.progress import Progress
from webapp.exports.spec import Kind
from webapp.exports.tables import Table

# Rows are gathered into blocks of at least this size: one write, one hash update and one progress
# check per block rather than per row.
BLOCK_BYTES = 1024 * 1024


# What the encoders hand out: bytes, or the one bytearray _blocks refills (see there).
Block = bytes | bytearray


def _blocks(
    chunks: Iterator[Any], progress: Progress, *, header: bool = False, array: bool = False
) -> Generator[bytearray, None, None]:
    """COPY rows (one buffer each, newline-terminated) gathered into blocks of at least BLOCK_BYTES.

    Every block is the same bytearray, emptied and refilled once the next one is asked for: the
    consumer writes (or copies) it first, so a row is copied once, into the block, and never joined.
    Rows are counted as they pass and reported once a block. `header`: the first buffer is a header,
    not a row. `array`: frame the rows as a JSON array.
    """
    buffer = bytearray()
    try:
        if array:
            rows = yield from _fill_array(chunks, buffer, progress)
        else:
            rows = yield from _fill(chunks, buffer, progress, header=header)
    finally:
        # Stop a COPY at once when the consumer stops early (a cancel, a client that went away).
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    yield buffer
    progress.update(rows)


def _fill(
    chunks: Iterator[Any], buffer: bytearray, progress: Progress, *, header: bool
) -> Generator[bytearray, None, int]:
    """Rows appended as they come, `buffer` yielded when full; returns how many (a header is not a row)."""
    rows = 0
    # Once a row: one append and one length test; enumerate keeps the count (the header is number 0).
    for rows, chunk in enumerate(chunks, 0 if header else 1):
        buffer += chunk
        if len(buffer) >= BLOCK_BYTES:
            yield buffer
            buffer.clear()
            progress.update(rows)
    return rows


def _fill_array(
    chunks: Iterator[Any], buffer: bytearray, progress: Progress
) -> Generator[bytearray, None, int]:
    """The rows as the elements of a JSON array, one a line; returns how many there were."""
    buffer += b"[\n"
    separator = b""
    rows = 0
    for rows, chunk in enumerate(chunks, 1):
        buffer += separator
        buffer += chunk[:-1]  # without its newline: the separator or the closing bracket brings one
        separator = b",\n"
        if len(buffer) >= BLOCK_BYTES:
            yield buffer
            buffer.clear()
            progress.update(rows)
    buffer += b"\n]\n" if rows else b"]\n"
    return rows


def _csv_text(value: Any, kind: Kind) -> Any:
    if value is None:
        return None
    if kind == "text":
        return neutralise(value)
    if kind == "timestamp":
        return value.isoformat()
    return value


def iter_csv(table: Table, progress: Progress) -> Generator[Block, None, None]:
    """CSV with a header row; text that a spreadsheet would evaluate starts with a single quote.

    Blocks from COPY are one reused bytearray (see _blocks): encode() gives copies that stay.
    """
    chunks = table.copy("csv")
    if chunks is not None:
        yield from _blocks(chunks, progress, header=True)
        return
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in table.columns])
    kinds = [c.kind for c in table.columns]
    rows = 0
    for row in table.rows():
        writer.writerow([_csv_text(value, kind) for value, kind in zip(row, kinds, strict=True)])
        rows += 1
        if out.tell() >= BLOCK_BYTES:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
            progress.update(rows)
    yield out.getvalue().encode()
    progress.update(rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return float(value)  # Decimal and numpy numbers


def iter_json(table: Table, progress: Progress, *, lines: bool) -> Generator[Block, None, None]:
    """A JSON array of objects, one per line, or NDJSON (`lines`): values as they are, typed.

    The blocks are one reused bytearray (see _blocks): encode() gives copies that stay.
    """
    chunks = table.copy("ndjson")
    if chunks is None:
        names = [c.name for c in table.columns]
        chunks = (
            json.dumps(
                dict(zip(names, row, strict=True)),
                default=_json_default,
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
            + b"\n"
            for row in table.rows()
        )
    return _blocks(chunks, progress, array=not lines)


def stream(fmt: str, table: Table, progress: Progress) -> Generator[Block, None, None]:
    """The blocks of a CSV, JSON or NDJSON export, each good until the next is asked for."""
    if fmt == "csv":
        return iter_csv(table, progress)
    if fmt in ("json", "ndjson"):
        return iter_json(table, progress, lines=fmt == "ndjson")
    raise ValueError(f"{fmt} is not a streamable format")


def encode(fmt: str, table: Table, progress: Progress) -> Generator[bytes, None, None]:
    """The bytes of a CSV, JSON or NDJSON export, in blocks (XLSX needs a file: see write_xlsx)."""
    return _kept(stream(fmt, table, progress))


def _kept(blocks: Generator[Block, None, None]) -> Generator[bytes, None, None]:
    """Each block as bytes of its own (a response may hold on to one while the next is made)."""
    # A consumer that stops early (a client gone) stops the COPY underneath at once.
    with closing(blocks):
        for block in blocks:
            yield bytes(block)
