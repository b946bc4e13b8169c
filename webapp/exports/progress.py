"""How far an export is: rows written out of a total, reported at most twice a second."""

from __future__ import annotations

from collections.abc import Callable
from time import monotonic

PROGRESS_SECONDS = 0.5
# While the total is the planner's estimate, progress stays at most this (in %) until the last row is in.
ESTIMATED_PROGRESS_PERCENT = 99

Report = Callable[[int, int], None]


class Progress:
    """Rows written so far, passed on to `report(rows, total)` at most every PROGRESS_SECONDS.

    An estimated total (`exact=False`) is reported as at least rows * 100 / ESTIMATED_PROGRESS_PERCENT,
    so a low estimate never shows the export as done while it still runs; finish() makes it exact.
    """

    def __init__(
        self,
        total: int,
        report: Report | None = None,
        interval: float = PROGRESS_SECONDS,
        *,
        exact: bool = True,
    ) -> None:
        self.total = total
        self.exact = exact
        self.rows = 0
        self._report = report
        self.interval = interval
        self._due = monotonic() + interval

    def update(self, rows: int) -> None:
        self.rows = rows
        if self._report is not None and monotonic() >= self._due:
            self._report(rows, self._reported_total())
            self._due = monotonic() + self.interval

    def checkpoint(self) -> None:
        """Report now, whatever the clock says (e.g. the last chance to cancel before the file appears)."""
        if self._report is not None:
            self._report(self.rows, self._reported_total())
        self._due = monotonic() + self.interval

    def finish(self) -> None:
        """Every row is written: from now on the rows are the total (an estimate gives way to the count)."""
        self.total = self.rows
        self.exact = True

    def _reported_total(self) -> int:
        if self.exact:
            return self.total
        return max(self.total, -(-self.rows * 100 // ESTIMATED_PROGRESS_PERCENT))  # integer ceiling
