"""Flask commands: create-org, create-user, issue-token, seed, migrate."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

import click
from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp.analytics import rollups
from webapp.core.timeutil import TimeError, utcnow, zone
from webapp.infra.db import session_scope
from webapp.models import Organization, User
from webapp.models.organizations import ROLES
from webapp.security.passwords import hash_password
from webapp.security.tokens import access_token_for


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("create-org")
@click.argument("name")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Berlin")
def create_org(name: str, tz: str) -> None:
    """Create an organization and print it as JSON."""
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
    """Create a user of an organization and print it as JSON."""
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


@click.command("issue-token")
@click.option("--email", required=True)
def issue_token(email: str) -> None:
    """Print an access token for a user."""
    with session_scope() as session:
        user = session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
        if user is None:
            _fail(f"no user with email {email}")
        assert user is not None
        click.echo(access_token_for(user))


@click.command("seed")
@click.option("--org", "org_id", type=int, required=True)
@click.option("--tickets", type=click.IntRange(1, 50_000_000), default=100_000, show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--seed", "rng_seed", type=int, default=0, show_default=True)
def seed(org_id: int, tickets: int, days: int, rng_seed: int) -> None:
    """Insert synthetic tickets and their events (through COPY)."""
    from webapp.tickets import seeding

    with session_scope() as session:
        org = session.get(Organization, org_id)
        if org is None:
            _fail(f"organization {org_id} does not exist")
        assert org is not None
        tz = org.timezone
    engine = current_app.extensions["db_engine"]
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        with click.progressbar(length=tickets, label="seeding tickets", file=sys.stderr) as bar:
            done = 0

            def advance(total: int) -> None:
                nonlocal done
                bar.update(total - done)
                done = total

            stats = seeding.seed_tickets(
                raw.driver_connection,
                org_id=org_id,
                tickets=tickets,
                days=days,
                seed=rng_seed,
                tz=tz,
                progress=advance,
            )
    finally:
        raw.close()
    seeded = time.perf_counter()
    with session_scope() as session:
        # Closed hours of the seeded range come from rollups from the first read on.
        built = rollups.build(
            session, org_id=org_id, start=utcnow() - timedelta(days=days, hours=1), end=utcnow()
        )
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


@click.command("migrate")
def migrate() -> None:
    """Apply every Alembic migration to the configured database."""
    from webapp.infra.migrations import upgrade

    upgrade(current_app.config["SQLALCHEMY_DATABASE_URL"])
    click.echo("database is at the latest migration")


def register_commands(app: Flask) -> None:
    for command in (create_org, create_user, issue_token, seed, migrate):
        app.cli.add_command(command)
