"""`python -m devstack up|down|run`: embedded PostgreSQL and Redis for development, and the whole stack."""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from devstack.supervisor import Supervisor, process_env, procfile_processes
from webapp import config

DATABASE = "ticket_analytics"
DEMO_EMAIL = "demo@example.com"
DEMO_TICKETS = 100_000
ROOT = Path(__file__).resolve().parent.parent
# From SIGTERM to SIGKILL when stopping: gunicorn's graceful_timeout is 10 s, and a Celery warm
# shutdown waits for running tasks (those still running after this are redelivered: late acks).
STOP_GRACE_SECONDS = 25.0


def _instance() -> Path:
    path = config.instance_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def up() -> dict[str, str]:
    """Start whatever is not configured by URL and record the URLs in instance/services.json."""
    from devstack.postgres import EmbeddedPostgres
    from devstack.redis import EmbeddedRedis

    instance = _instance()
    services: dict[str, str] = {}
    if config.env("DATABASE_URL") is None:
        pg = EmbeddedPostgres(instance / "postgres")
        pg.start()
        pg.wait_ready()
        pg.ensure_database(DATABASE)
        services["database_url"] = pg.url(DATABASE)
        print(f"embedded PostgreSQL on 127.0.0.1:{pg.port} (data in {pg.pgdata})", flush=True)
    if config.env("REDIS_URL") is None:
        rd = EmbeddedRedis(instance / "redis")
        rd.start()
        services["redis_url"] = rd.url
        print(f"embedded Redis on 127.0.0.1:{rd.port} (data in {rd.datadir})", flush=True)
    (instance / config.SERVICES_FILE).write_text(json.dumps(services, indent=2))
    return services


def down() -> None:
    """Stop the embedded servers (their data stays under instance/)."""
    from devstack.postgres import EmbeddedPostgres
    from devstack.redis import EmbeddedRedis

    instance = _instance()
    if (instance / "redis").exists():
        EmbeddedRedis(instance / "redis").stop()
    if (instance / "postgres" / "pgdata").exists():
        EmbeddedPostgres(instance / "postgres").stop()
    (instance / config.SERVICES_FILE).unlink(missing_ok=True)


def _flask(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "webapp", *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return result.stdout.strip()


def bootstrap_demo() -> dict[str, str]:
    """On the first run: a demo organization, its admin, and synthetic tickets."""
    state_file = _instance() / "demo.json"
    if state_file.exists():
        return json.loads(state_file.read_text())
    org = json.loads(_flask("create-org", "Demo Support", "--timezone", "America/New_York"))
    password = secrets.token_urlsafe(12)
    _flask(
        "create-user",
        "--org",
        str(org["id"]),
        "--email",
        DEMO_EMAIL,
        "--password",
        password,
        "--role",
        "admin",
    )
    state = {"org_id": str(org["id"]), "email": DEMO_EMAIL, "password": password}
    print(f"seeding {DEMO_TICKETS:,} demo tickets…", flush=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "webapp",
            "seed",
            "--org",
            str(org["id"]),
            "--tickets",
            str(DEMO_TICKETS),
            "--days",
            "365",
        ],
        check=True,
    )
    state_file.write_text(json.dumps(state, indent=2))
    state_file.chmod(0o600)
    return state


def run() -> int:
    """Services, migrations, demo data, then web, worker and beat until Ctrl-C."""
    up()
    try:
        _flask("migrate")
        demo = bootstrap_demo()
        token = _flask("issue-token", "--email", demo["email"])
        port = config.env_int("PORT", 8000)
        url = f"http://127.0.0.1:{port}"
        print(
            "\n".join(
                [
                    "",
                    f"  Platform:   {url}   (API docs: {url}/api/v1/docs)",
                    f"  Demo login: {demo['email']} / {demo['password']}",
                    f"  Token:      {token}",
                    f"  Try:        curl -H 'Authorization: Bearer <token>' {url}/api/v1/tickets?limit=3",
                    "  Stop with Ctrl-C.",
                    "",
                ]
            ),
            flush=True,
        )
        # Our own supervisor rather than honcho: honcho stops everything when one process exits, so a
        # killed worker took the whole platform down; this one restarts it (devstack/supervisor.py).
        env = process_env(port)
        processes = procfile_processes(ROOT / "Procfile", port=port, env=env)
        return Supervisor(processes, env=env, cwd=ROOT, grace=STOP_GRACE_SECONDS).run()
    finally:
        down()
        print("stopped.", flush=True)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SIGTERM before or after the supervisor runs (it handles SIGTERM itself while it does) unwinds
    # like Ctrl-C, through run()'s `finally: down()`, instead of leaving the servers running.
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack")
    parser.add_argument("command", choices=("up", "down", "run"))
    args = parser.parse_args()
    if args.command == "up":
        print(json.dumps(up()))
        return 0
    if args.command == "down":
        down()
        return 0
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return run()
    except KeyboardInterrupt:  # Ctrl-C before the processes started; run() has stopped the servers
        return 130


if __name__ == "__main__":
    sys.exit(main())
