"""Flask commands: create-org, create-user, disable-user, delete-user, issue-token, seed, demo, migrate."""

from __future__ import annotations

import json
import secrets
import sys
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import click
from flask import Flask, current_app
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from webapp.analytics import agent_rollups, rollups
from webapp.clocks.schedules import create_schedule
from webapp.core.timeutil import TimeError, utcnow, zone
from webapp.core.vocabulary import ROLES
from webapp.infra.db import session_scope
from webapp.infra.redis_client import get_redis
from webapp.models import Organization, User
from webapp.security import accounts
from webapp.security.passwords import hash_password
from webapp.security.tokens import access_token_for

if TYPE_CHECKING:
    from webapp.tickets.seeding import SeedStats

DEMO_ORGANIZATION = "Demo Support"
DEMO_TIMEZONE = "America/New_York"
DEMO_EMAIL = "demo@example.com"
# The demo's default business-hours schedule, so clock=business answers on a fresh start: weekdays
# 09:00-17:00 with a lunch break, in the demo's zone, and the year's US holidays.
DEMO_SCHEDULE = {
    "name": "Support hours",
    "timezone": DEMO_TIMEZONE,
    "intervals": [
        {"day": day, "start": start, "end": end}
        for day in ("mon", "tue", "wed", "thu", "fri")
        for start, end in (("09:00", "12:30"), ("13:30", "17:00"))
    ],
    "holidays": [
        {"date": "2026-01-01", "name": "New Year's Day"},
        {"date": "2026-05-25", "name": "Memorial Day"},
        {"date": "2026-07-03", "name": "Independence Day (observed)"},
        {"date": "2026-09-07", "name": "Labor Day"},
        {"date": "2026-11-26", "name": "Thanksgiving"},
        {"date": "2026-12-25", "name": "Christmas Day"},
    ],
}


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("create-org")
@click.argument("name")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Berlin")
def create_org(name: str, tz: str) -> None:
    """Create an organization and print it as JSON."""
    if not name.strip() or len(name) > 200:
        _fail("the organization's name must be 1 to 200 characters, not only spaces")
    try:
        zone(tz)
    except TimeError as exc:
        _fail(str(exc))
    with session_scope() as session:
        org = Organization(name=name, timezone=tz)
        session.add(org)
        session.flush()
        session.refresh(org)
        click.echo(json.dumps(org.to_dict()))


@click.command("create-user")
@click.option("--org", "org_id", type=int, required=True)
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True)
def create_user(org_id: int, email: str, password: str, role: str) -> None:
    """Create a user of an organization and print it as JSON (the checks of POST /users)."""
    problem = accounts.new_user_problem(email, password)
    if problem is not None:
        _fail(problem)
    with session_scope() as session:
        if session.get(Organization, org_id) is None:
            _fail(f"organization {org_id} does not exist")
        user = User(
            org_id=org_id, email=email.strip().lower(), password_hash=hash_password(password), role=role
        )
        session.add(user)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            _fail(f"a user with email {email} already exists")
        click.echo(json.dumps(user.to_dict()))


def _user(session: Session, email: str, org_id: int | None = None) -> User:
    """The one user with `email` (of organization `org_id`, needed when several have it)."""
    query = select(User).where(func.lower(User.email) == email.strip().lower())
    if org_id is not None:
        query = query.where(User.org_id == org_id)
    users = session.scalars(query).all()
    if not users:
        _fail(f"no user with email {email}" + (f" in organization {org_id}" if org_id is not None else ""))
    if len(users) > 1:
        _fail(f"users of several organizations have the email {email}; name one with --org")
    return users[0]


# Emails are unique per organization only: the commands that find a user by email take this option,
# which _user's refusal of an email several organizations have names.
org_option = click.option(
    "--org", "org_id", type=int, default=None, help="the organization, when several have the email"
)


@click.command("disable-user")
@click.option("--email", required=True)
@org_option
@click.option("--enable", is_flag=True, help="let a disabled user log in again instead")
def disable_user(email: str, org_id: int | None, enable: bool) -> None:
    """Disable a user (no login, every token revoked), or enable them again; print the user as JSON."""
    with session_scope() as session:
        user = _user(session, email, org_id)
        if enable:
            accounts.enable_user(session, user)
        else:
            revoked = accounts.disable_user(session, get_redis(), user, utcnow())
            click.echo(f"{revoked} tokens revoked", err=True)
        click.echo(json.dumps({**user.to_dict(), "disabled": user.disabled_at is not None}))


@click.command("delete-user")
@click.option("--email", required=True)
@org_option
def delete_user(email: str, org_id: int | None) -> None:
    """Delete a user and revoke every token issued to them."""
    with session_scope() as session:
        user = _user(session, email, org_id)
        answer = user.to_dict()
        revoked = accounts.delete_user(session, get_redis(), user, utcnow())
        click.echo(f"{revoked} tokens revoked", err=True)
        click.echo(json.dumps(answer))


@click.command("issue-token")
@click.option("--email", required=True)
@org_option
def issue_token(email: str, org_id: int | None) -> None:
    """Print an access token for a user."""
    with session_scope() as session:
        user = _user(session, email, org_id)
        if user.disabled_at is not None:
            _fail(f"user {email} is disabled")
        click.echo(access_token_for(user))


def _copy_tickets(
    conn: Connection, *, org_id: int, tz: str, tickets: int, days: int, rng_seed: int
) -> SeedStats:
    """COPY synthetic tickets on `conn`, inside the transaction it has begun, with a progress bar."""
    from webapp.tickets import seeding

    with click.progressbar(length=tickets, label="seeding tickets", file=sys.stderr) as bar:
        done = 0

        def advance(total: int) -> None:
            nonlocal done
            bar.update(total - done)
            done = total

        # A savepoint of the caller's transaction: the connection has run a statement of it already.
        return seeding.seed_tickets(
            conn.connection.driver_connection,
            org_id=org_id,
            tickets=tickets,
            days=days,
            seed=rng_seed,
            tz=tz,
            progress=advance,
        )


def _build_rollups(session: Session, *, org_id: int, days: int) -> rollups.BuildStats:
    """Closed hours of the seeded range come from rollups from the first read on, and the agents
    report from its per-agent rollups."""
    stats = rollups.build(
        session, org_id=org_id, start=utcnow() - timedelta(days=days, hours=1), end=utcnow()
    )
    org = session.get(Organization, org_id)
    assert org is not None
    agent_rollups.rebuild(session, org)
    return stats


@click.command("seed")
@click.option("--org", "org_id", type=int, required=True)
@click.option("--tickets", type=click.IntRange(1, 50_000_000), default=100_000, show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--seed", "rng_seed", type=int, default=0, show_default=True)
def seed(org_id: int, tickets: int, days: int, rng_seed: int) -> None:
    """Insert synthetic tickets and their events (through COPY), then their rollups."""
    engine = current_app.extensions["db_engine"]
    started = time.perf_counter()
    # Two transactions: ticket writes of every organization wait for the first (it reserves ids).
    with engine.connect() as conn:
        with conn.begin():
            org = Session(bind=conn).get(Organization, org_id)
            if org is None:
                _fail(f"organization {org_id} does not exist")
            assert org is not None
            stats = _copy_tickets(
                conn, org_id=org_id, tz=org.timezone, tickets=tickets, days=days, rng_seed=rng_seed
            )
        seeded = time.perf_counter()
        with conn.begin():
            built = _build_rollups(Session(bind=conn), org_id=org_id, days=days)
    seed_seconds = seeded - started
    click.echo(
        json.dumps(
            {
                "org_id": org_id,
                "tickets": stats.tickets,
                "events": stats.events,
                "seed_seconds": round(seed_seconds, 2),
                "tickets_per_second": round(stats.tickets / seed_seconds) if seed_seconds else None,
                "rollup_rows": built.written,
                "rollup_seconds": round(time.perf_counter() - seeded, 2),
            }
        )
    )


@click.command("demo")
@click.option("--tickets", type=click.IntRange(1, 50_000_000), default=100_000, show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
def demo(tickets: int, days: int) -> None:
    """Create the demo organization, its admin, tickets and rollups, and print the login as JSON.

    All in one transaction: stopped halfway, it leaves nothing. When the demo admin exists already
    (its login was lost), it gets a new password and nothing else changes.
    """
    password = secrets.token_urlsafe(12)
    engine = current_app.extensions["db_engine"]
    with engine.connect() as conn, conn.begin():
        session = Session(bind=conn)
        user = session.scalar(select(User).where(User.email == DEMO_EMAIL))
        if user is not None:
            user.password_hash = hash_password(password)
            session.flush()
            org_id = user.org_id
        else:
            org = Organization(name=DEMO_ORGANIZATION, timezone=DEMO_TIMEZONE)
            session.add(org)
            session.flush()
            org_id = org.id
            session.add(
                User(org_id=org_id, email=DEMO_EMAIL, password_hash=hash_password(password), role="admin")
            )
            session.flush()
            _copy_tickets(conn, org_id=org_id, tz=DEMO_TIMEZONE, tickets=tickets, days=days, rng_seed=0)
            _build_rollups(session, org_id=org_id, days=days)
            # Its business-hours rollups are built by beat's next pass; until then reads count raw events.
            create_schedule(session, org_id, DEMO_SCHEDULE)
            session.flush()
    click.echo(json.dumps({"org_id": str(org_id), "email": DEMO_EMAIL, "password": password}))


@click.command("migrate")
def migrate() -> None:
    """Apply every Alembic migration to the configured database."""
    from webapp.infra.migrations import upgrade

    upgrade(current_app.config["SQLALCHEMY_DATABASE_URL"])
    click.echo("database is at the latest migration")


def register_commands(app: Flask) -> None:
    """Add every command above to `flask --app webapp`."""
    for command in (create_org, create_user, disable_user, delete_user, issue_token, seed, demo, migrate):
        app.cli.add_command(command)
