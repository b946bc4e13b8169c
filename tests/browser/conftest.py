"""Debian's Chromium, driven by Playwright, against the real gunicorn web process and Celery worker.

Every page a test opens is watched: a console error or an uncaught exception fails the test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.conftest import TEST_INSTANCE, Tenant, _make_tenant
from tests.e2e.conftest import Web, web_server  # noqa: F401  (the same real web process as tests/e2e)
from webapp.analytics import rollups
from webapp.core.timeutil import utcnow
from webapp.infra.db import session_scope
from webapp.tickets import seeding

CHROMIUM = Path("/usr/bin/chromium")
# Playwright's own browser download is not used: Debian's build, without the sandbox root lacks.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# The narrowest phone screen the pages are made for.
NARROWEST = 320
# Where the screenshots go; DASHBOARD_SCREENSHOTS=docs/screenshots refreshes the README's.
SCREENSHOTS = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or TEST_INSTANCE / "screenshots")
DEMO_TICKETS = 3_000
DEMO_DAYS = 120
PASSWORD = "s3cret-pass"


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver, for the whole session."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's Chromium, started once."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` (part of `make test`) installs Debian's chromium")
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Watched:
    """A browser context whose pages' console errors and uncaught exceptions are collected."""

    context: BrowserContext
    base_url: str
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def page(self) -> Page:
        """A new tab, watched."""
        page = self.context.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        return page

    def _console(self, message: Any) -> None:
        if message.type == "error" and not any(text in message.text for text in self.allowed):
            self.problems.append(f"console: {message.text}")

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        """Sign in as the page does, without the form (the context keeps the session cookies)."""
        response = self.context.request.post(
            f"{self.base_url}/web/session",
            data={"email": email, "password": password},
            headers={"X-Requested-With": "dashboard"},
        )
        assert response.status == 200, response.text()


def _context(browser: Browser, web: Web, viewport: dict[str, int]) -> Iterator[Watched]:
    context = browser.new_context(viewport=viewport, base_url=web.base_url, accept_downloads=True)
    watched = Watched(context, web.base_url)
    yield watched
    context.close()
    assert not watched.problems, "\n".join(watched.problems)


@pytest.fixture
def desktop(browser: Browser, web_server: Web) -> Iterator[Watched]:  # noqa: F811
    """A fresh browser context at 1280x800."""
    yield from _context(browser, web_server, DESKTOP)


@pytest.fixture
def phone(browser: Browser, web_server: Web) -> Iterator[Watched]:  # noqa: F811
    """A fresh browser context at 390x844."""
    yield from _context(browser, web_server, PHONE)


def _seeded(flask_app: Flask, name: str, tickets: int) -> Tenant:
    """A committed organization (New York) with `tickets` synthetic tickets and their rollups."""
    tenant = _make_tenant(flask_app, name, "America/New_York")
    with flask_app.app_context():
        raw = flask_app.extensions["db_engine"].raw_connection()
        try:
            seeding.seed_tickets(
                raw.driver_connection,
                org_id=tenant.org_id,
                tickets=tickets,
                days=DEMO_DAYS,
                seed=secrets.randbelow(1000),
                tz=tenant.timezone,
            )
        finally:
            raw.close()
        with session_scope() as session:
            rollups.build(
                session,
                org_id=tenant.org_id,
                start=utcnow() - timedelta(days=DEMO_DAYS, hours=1),
                end=utcnow(),
            )
    return tenant


@pytest.fixture(scope="session")
def demo(base_app: Flask, web_server: Web) -> Tenant:  # noqa: F811
    """An organization with a few months of tickets, read (never changed) by the tests."""
    return _seeded(base_app, "Browser Demo", DEMO_TICKETS)


@pytest.fixture
def fresh(base_app: Flask, web_server: Web) -> Tenant:  # noqa: F811
    """An organization of its own for a test that changes tickets."""
    return _seeded(base_app, "Browser Live", 50)


def office_and_all_hours(web: Web, tenant: Tenant) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two business-hours schedules of `tenant`: office hours on weekdays (the first, so the default)
    and every hour of the week, whose durations differ from the default's."""
    days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    made = []
    for name, open_days, start, end in (
        ("Office hours", days[:5], "09:00", "17:00"),
        ("Around the clock", days, "00:00", "24:00"),
    ):
        body = {
            "name": name,
            "timezone": tenant.timezone,
            "intervals": [{"day": day, "start": start, "end": end} for day in open_days],
        }
        status, schedule = web.request("POST", "/api/v1/schedules", tenant.users["admin"]["token"], body)
        assert status == 201, schedule
        made.append(schedule)
    return made[0], made[1]


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot named `name`.png in SCREENSHOTS."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_table_scrolls_sideways(page: Page, wrap: str, width: int = NARROWEST) -> None:
    """At `width` px the page fits and the table in `wrap` scrolls in its own region, which a keyboard
    reaches (a named, focusable region) and moves with the arrow keys."""
    page.set_viewport_size({"width": width, "height": PHONE["height"]})
    # The charts follow the new width on the resize event's next frame: wait for the page to settle.
    page.wait_for_function(f"() => document.documentElement.scrollWidth <= {width}", timeout=5000)
    region = page.locator(wrap)
    assert region.get_attribute("role") == "region"
    assert region.get_attribute("aria-label")
    assert region.get_attribute("tabindex") == "0"
    box = region.bounding_box()
    assert box is not None
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= width, box
    assert region.evaluate("el => el.scrollWidth > el.clientWidth"), "the table fits: nothing to scroll"
    region.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("el => el.scrollLeft > 0", arg=region.element_handle())
