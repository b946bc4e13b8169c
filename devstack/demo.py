"""The demo organization `make run` creates on its first run, and the login it prints every run."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from devstack.children import run_step

DEMO_FILE = "demo.json"


def flask_command(*args: str) -> list[str]:
    """A `flask --app webapp` command run by this interpreter."""
    return [sys.executable, "-m", "flask", "--app", "webapp", *args]


def demo_login(instance: Path, tickets: int, days: int, cwd: Path) -> dict[str, str]:
    """The demo's login from instance/demo.json, or from `flask demo` when there is none yet.

    `flask demo` makes the organization, its admin and every ticket and rollup in one transaction,
    and demo.json is written only once it has committed: a run stopped while seeding leaves nothing
    behind, and the next run seeds again.
    """
    state_file = instance / DEMO_FILE
    try:
        return json.loads(state_file.read_text())
    except (FileNotFoundError, ValueError):
        pass
    print(
        f"seeding {tickets:,} demo tickets over {days:,} days (Ctrl-C stops; the next run starts over)…",
        flush=True,
    )
    output = run_step(
        flask_command("demo", "--tickets", str(tickets), "--days", str(days)), cwd=cwd, capture=True
    )
    state = json.loads(output.strip().splitlines()[-1])
    draft = state_file.with_name(f".{DEMO_FILE}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle, indent=2)
    draft.replace(state_file)
    return state
