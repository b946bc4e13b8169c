"""XLSX exports: typed cells in XlsxWriter's constant-memory mode, more sheets past Excel's row limit."""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import xlsxwriter

from webapp.exports.formulas import FORMULA_START
from webapp.exports.progress import Progress
from webapp.exports.tables import Table

# Excel's limit per sheet, header row included: rows past it continue on another sheet.
XLSX_SHEET_ROWS = 1_048_576

_XLSX_WIDTHS = {"text": 18, "timestamp": 20, "int": 10, "float": 12}


def write_xlsx(
    table: Table,
    target: Path | BinaryIO,
    progress: Progress,
    *,
    metadata: Mapping[str, Any],
    sheet_rows: int = XLSX_SHEET_ROWS,
    tmpdir: Path | None = None,
) -> int:
    """XLSX at `target`: typed cells, a frozen header, more sheets past `sheet_rows`, then metadata.

    XlsxWriter's constant-memory mode flushes each row to a temporary file as the next one starts,
    so memory stays flat whatever the row count. Timestamps become Excel dates in the table's zone,
    each shown with its UTC offset (Excel's dates have none: the offset is in the cell's format).
    """
    # Constant-memory mode keeps each sheet's rows in a temporary file until close(); a directory of
    # our own makes sure they go away with an interrupted export too.
    with tempfile.TemporaryDirectory(dir=tmpdir, prefix=".xlsx-") as scratch:
        workbook = xlsxwriter.Workbook(
            str(target) if isinstance(target, Path) else target, {"constant_memory": True, "tmpdir": scratch}
        )
        rows = _fill_workbook(workbook, table, progress, metadata=metadata, sheet_rows=sheet_rows)
        _close(workbook, progress)
        return rows


def _close(workbook: xlsxwriter.Workbook, progress: Progress) -> None:
    """Zip the workbook in a thread while this one keeps reporting (1M rows take ~10 s to zip).

    A cancel raised by a report waits for the zip to finish, so the caller can remove the file.
    """
    failure: list[BaseException] = []

    def close() -> None:
        try:
            workbook.close()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=close, name="xlsx-close", daemon=True)
    thread.start()
    interrupted: BaseException | None = None
    while thread.is_alive():
        thread.join(progress.interval)
        if thread.is_alive() and interrupted is None:
            try:
                progress.checkpoint()
            except BaseException as exc:
                interrupted = exc
    if interrupted is not None:
        raise interrupted
    if failure:
        raise failure[0]


class _OffsetFormats:
    """The date format of each UTC offset met (a zone has one or two): local time, then the offset."""

    def __init__(self, workbook: xlsxwriter.Workbook) -> None:
        self._workbook = workbook
        self._formats: dict[timedelta | None, Any] = {}

    def of(self, local: datetime) -> Any:
        """The format of a cell holding `local` (an aware time in the table's zone)."""
        offset = local.utcoffset()
        found = self._formats.get(offset)
        if found is None:
            found = self._workbook.add_format(
                {"num_format": f'yyyy-mm-dd hh:mm:ss.000"{offset_text(local)}"'}
            )
            self._formats[offset] = found
        return found


def offset_text(local: datetime) -> str:
    """The UTC offset of `local` as isoformat() writes it: +01:00, -03:30, +00:00 (+00:19:32 for the
    odd offsets of some zones before 1940)."""
    offset = local.strftime("%z")
    return ":".join((offset[:3], *(offset[i : i + 2] for i in range(3, len(offset), 2))))


def _fill_workbook(
    workbook: xlsxwriter.Workbook,
    table: Table,
    progress: Progress,
    *,
    metadata: Mapping[str, Any],
    sheet_rows: int,
) -> int:
    bold = workbook.add_format({"bold": True})
    quoted = workbook.add_format({"quote_prefix": True})
    dated = _OffsetFormats(workbook)
    tz = table.tz
    names = [c.name for c in table.columns]
    kinds = list(enumerate(c.kind for c in table.columns))
    sheets: list[Any] = []

    def new_sheet() -> Any:
        sheet = workbook.add_worksheet("data" if not sheets else f"data {len(sheets) + 1}")
        for index, column in enumerate(table.columns):
            sheet.set_column(index, index, max(_XLSX_WIDTHS[column.kind], len(column.name) + 2))
        sheet.freeze_panes(1, 0)
        sheet.write_row(0, 0, names, bold)
        sheets.append(sheet)
        return sheet

    sheet = new_sheet()
    line = 1
    rows = 0
    for row in table.rows():
        if line == sheet_rows:
            sheet = new_sheet()
            line = 1
        for index, kind in kinds:
            value = row[index]
            if value is None:
                continue
            if kind == "text":
                if value and value[0] in FORMULA_START:
                    sheet.write_string(line, index, value, quoted)
                else:
                    sheet.write_string(line, index, value)
            elif kind == "timestamp":
                local = value.astimezone(tz)
                sheet.write_datetime(line, index, local.replace(tzinfo=None), dated.of(local))
            else:
                sheet.write_number(line, index, value)
        line += 1
        rows += 1
        if rows % 1000 == 0:
            progress.update(rows)
    progress.update(rows)

    info = workbook.add_worksheet("metadata")
    info.set_column(0, 0, 16)
    info.set_column(1, 1, 80)
    entries = {**metadata, "rows": rows, "sheets": len(sheets), "columns": ", ".join(names)}
    for line, (key, value) in enumerate(entries.items()):
        info.write_string(line, 0, key, bold)
        if isinstance(value, int | float) and not isinstance(value, bool):
            info.write_number(line, 1, value)
        else:
            rendered = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            info.write_string(line, 1, rendered, quoted if rendered[:1] in FORMULA_START else None)
    return rows
