"""Bulk ticket import: every record checked, then the batch written all or nothing.

Each row goes through the same schema as `POST /tickets` and through `plans.plan_ticket`, the
logic of `writes.create_ticket`, so an imported ticket and its events are exactly what the API
would have written; the batch is written in bulk (`bulk_writer.BulkWriter`) while it is being
checked. One request is one batch: every row is validated, and if any row fails nothing is written
and the report lists each failing row. The same rules run at submit (`check_rows`, through
`plans.check_ticket`), so a batch the job would refuse never becomes a job; the job checks again,
as every write does. (Reading the body: import_formats.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import redis
from pydantic import ValidationError
from sqlalchemy.orm import Session

from webapp.core.timeutil import utcnow
from webapp.models import Organization
from webapp.tickets.bulk_writer import BulkWriter
from webapp.tickets.effects import announce
from webapp.tickets.fields import ImportedTicket
from webapp.tickets.import_formats import RowProblem
from webapp.tickets.plans import PlannedTicket, check_ticket, plan_ticket
from webapp.tickets.rules import TicketError

# The report lists this many failing rows and counts the rest, so a broken file cannot bloat the job row.
MAX_REPORTED_ERRORS = 500
# Tickets per chunk handed to the writer: the database starts on the first chunk early and writes
# little after the last row is checked, with a few statements per chunk.
WRITE_CHUNK = 1000


@dataclass
class RowError:
    """One problem of one row (1-based), with the field it is about when there is one."""

    row: int
    field: str | None
    message: str


@dataclass
class ImportReport:
    """What an import did (or would have done): counts and the failing rows, 1-based."""

    rows: int
    imported: int = 0
    events: int = 0
    invalid: int = 0
    errors: list[RowError] = field(default_factory=list)
    omitted: int = 0
    _last_row: int = field(default=0, repr=False)

    def add_error(self, row: int, field_name: str | None, message: str) -> None:
        """Count `row` as invalid (once) and list the problem while the list has room."""
        if row != self._last_row:
            self.invalid += 1
            self._last_row = row
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RowError(row, field_name, message))
        else:
            self.omitted += 1

    def to_dict(self) -> dict[str, Any]:
        """The report as the job's result holds it."""
        return {
            "rows": self.rows,
            "imported": self.imported,
            "events": self.events,
            "invalid": self.invalid,
            "errors": [asdict(e) for e in self.errors],
            "errors_omitted": self.omitted,
        }


class ImportRejected(Exception):
    """At least one row failed, so nothing of the batch was written; `report` says which."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"{report.invalid} of {report.rows} rows are invalid; nothing was imported")
        self.report = report


def check_rows(org: Organization, rows: list[Any], now: datetime | None = None) -> ImportReport:
    """Each record checked alone, as POST /tickets checks its body: its fields (validate_row), then
    every rule between them that needs no database (plans.check_ticket: times in the organization's
    zone, their order, the status history). The report names the rows that fail, so an import that
    the job would refuse is refused at submit and holds no job slot."""
    now = now or utcnow()
    report = ImportReport(rows=len(rows))
    for number, raw in enumerate(rows, start=1):
        for field_name, message in _row_problems(org, raw, now):
            report.add_error(number, field_name, message)
    return report


def _row_problems(org: Organization, raw: Any, now: datetime) -> list[tuple[str | None, str]]:
    """The (field, message) problems of one record: its fields', else the first rule it breaks."""
    fields, problems = validate_row(raw)
    if fields is None:
        return problems
    try:
        check_ticket(org, fields, now)
    except TicketError as exc:
        return [(exc.field, str(exc))]
    return []


def validate_row(raw: Any) -> tuple[dict[str, Any] | None, list[tuple[str | None, str]]]:
    """The fields of one record as `POST /tickets` accepts them (with replies, satisfaction and
    status_history), or the (field, message) problems."""
    if isinstance(raw, RowProblem):
        return None, [(raw.field, raw.message)]
    if not isinstance(raw, dict):
        return None, [(None, "each ticket must be an object")]
    try:
        return ImportedTicket.model_validate(raw).model_dump(exclude_unset=True), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_context=False):
            name = ".".join(str(part) for part in err["loc"]) or None
            problems.append((name, err["msg"]))
        return None, problems


def _plan_row(
    org: Organization, raw: Any, now: datetime, index: int, report: ImportReport, fields_given: set[str]
) -> PlannedTicket | None:
    """What row `index` (1-based) writes, or None with its problems added to `report`."""
    fields, problems = validate_row(raw)
    for name, message in problems:
        report.add_error(index, name, message)
    if fields is None:
        return None
    try:
        plan = plan_ticket(org, fields, now)
    except TicketError as exc:
        report.add_error(index, exc.field, str(exc))
        return None
    fields_given.update(fields)
    return plan


def import_rows(
    session: Session,
    org: Organization,
    rows: list[Any],
    *,
    now: datetime | None = None,
    on_progress: Callable[[float], None] | None = None,
    checkpoints: int = 12,
) -> tuple[ImportReport, list[str], set[str]]:
    """Create every row's ticket in `session` (not committed), or raise ImportRejected.

    Every row is validated and planned (tickets.plan_ticket, what create_ticket would write). While
    all pass, the planned tickets go chunk by chunk to a tickets.BulkWriter, which writes one chunk
    in the database while the next is checked; the first failing row stops the writing (the caller's
    rollback undoes what was written) but not the checking, so the report names every failing row.
    Returns the report, the event types written and the fields given, for what follows the commit.
    `on_progress` is called about `checkpoints` times with the fraction done.
    """
    now = now or utcnow()
    report = ImportReport(rows=len(rows))
    fields_given: set[str] = set()
    chunk: list[PlannedTicket] = []
    every = max(1, len(rows) // checkpoints)
    # The checks run while the database writes; the rest of the write and the rollups after them take
    # about as long again, told step by step (an import's progress stood still for half its run).
    share = 0.5
    with BulkWriter(session, org.id, len(rows)) as writer:
        for index, raw in enumerate(rows, start=1):
            plan = _plan_row(org, raw, now, index, report, fields_given)
            if plan is not None and not report.invalid:
                chunk.append(plan)
                if len(chunk) == WRITE_CHUNK:
                    writer.add(chunk)
                    chunk = []
            if on_progress is not None and index % every == 0 and index < len(rows):
                on_progress(share * index / len(rows))
        if report.invalid:
            raise ImportRejected(report)
        writer.add(chunk)
        written = writer.finish(
            None if on_progress is None else lambda done: on_progress(share + (1 - share) * done)
        )
    report.imported = len(written.ticket_ids)
    report.events = written.events
    return report, sorted(written.event_types), fields_given


def after_import(
    client: redis.Redis, org_id: int, event_types: Iterable[str], fields: Iterable[str], *, job_id: str
) -> None:
    """After the commit: invalidate what the new tickets change and tell live clients once.

    One event for the whole batch: thousands of per-ticket events would flood the stream.
    """
    announce(client, org_id, event_types, fields, {"import_job_id": job_id})
