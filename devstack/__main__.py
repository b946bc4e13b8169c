"""`python -m devstack up|down|run|processes`: embedded PostgreSQL and Redis, the whole stack, or the
Procfile's processes alone.

- `run` (behind `make run`): the embedded servers (or DATABASE_URL / REDIS_URL), migrations, the demo
  on the first run, then web, workers and beat under supervisord until Ctrl-C, which stops everything,
  the embedded servers included, at any moment.
- `processes [-f Procfile] [-p PORT]`: the Procfile's processes alone, restarted and stopped the same
  way, against whatever servers DATABASE_URL and REDIS_URL name.
- `up` / `down`: start or stop the embedded servers alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from devstack import processes, services
from devstack.children import StepFailed, interrupts_ignored, interrupts_raise, run_step
from devstack.demo import demo_login, flask_command
from webapp import config

ROOT = Path(__file__).resolve().parent.parent


def _banner(port: int, login: dict[str, str], token: str) -> str:
    url = f"http://127.0.0.1:{port}"
    return "\n".join(
        [
            "",
            f"  Platform:   {url}   (API docs: {url}/api/v1/docs)",
            f"  Demo login: {login['email']} / {login['password']}",
            f"  Token:      {token}",
            f"  Try:        curl -H 'Authorization: Bearer <token>' {url}/api/v1/tickets?limit=3",
            "  Stop with Ctrl-C.",
            "",
        ]
    )


def run() -> int:
    """Services, migrations, demo data, then web, workers and beat until Ctrl-C; returns the exit code."""
    settings = config.from_environment()
    instance = Path(settings["INSTANCE_PATH"])
    instance.mkdir(parents=True, exist_ok=True)
    port = settings["PORT"]
    policy = processes.Policy()
    # Processes a killed run left behind would hold the port and keep using the servers.
    processes.stop_leftover(instance, policy.grace + processes.STOP_MARGIN)
    try:
        services.up(settings)
        run_step(flask_command("migrate"), cwd=ROOT)
        login = demo_login(instance, settings["DEMO_TICKETS"], settings["DEMO_DAYS"], ROOT)
        token = run_step(flask_command("issue-token", "--email", login["email"]), cwd=ROOT, capture=True)
        print(_banner(port, login, token.strip()), flush=True)
        env = processes.process_env(port)
        if config.env("WEBHOOK_ALLOW_PRIVATE") is None:
            # A developer's stack: the webhook receivers it is tried with listen on this machine.
            env["WEBHOOK_ALLOW_PRIVATE"] = "1"
            print("  WEBHOOK_ALLOW_PRIVATE=1: webhooks may target private and loopback addresses", flush=True)
        procs = processes.procfile_processes(ROOT / "Procfile", port=port, env=env)
        return processes.run(procs, instance=instance, cwd=ROOT, env=env, policy=policy)
    finally:
        with interrupts_ignored():
            services.down(instance)
            print("stopped.", flush=True)


def run_procfile(args: argparse.Namespace) -> int:
    """The Procfile's processes alone, against the configured servers."""
    settings = config.from_environment()
    env = processes.process_env(args.port)
    policy = processes.Policy(grace=args.grace, stable_after=args.stable_after, retries=args.retries)
    return processes.run(
        processes.procfile_processes(args.procfile, port=args.port, env=env),
        instance=Path(settings["INSTANCE_PATH"]),
        cwd=Path.cwd(),
        env=env,
        policy=policy,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point; a Ctrl-C, SIGTERM or SIGHUP stops whatever command runs."""
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the embedded PostgreSQL and Redis")
    commands.add_parser("down", help="stop them")
    commands.add_parser("run", help="the whole stack, with demo data (make run)")
    procfile = commands.add_parser("processes", help="the Procfile's processes against your servers")
    defaults = processes.Policy()
    procfile.add_argument("-f", "--procfile", type=Path, default=Path("Procfile"))
    procfile.add_argument("-p", "--port", type=int, default=config.from_environment()["PORT"])
    procfile.add_argument("--grace", type=float, default=defaults.grace, help="SIGTERM to SIGKILL, s")
    procfile.add_argument(
        "--stable-after", type=int, default=defaults.stable_after, help="uptime that resets the backoff, s"
    )
    procfile.add_argument(
        "--retries", type=int, default=defaults.retries, help="quick exits in a row before giving up"
    )
    args = parser.parse_args(argv)
    with interrupts_raise():
        try:
            if args.command == "up":
                print(json.dumps(services.up(config.from_environment())))
            elif args.command == "down":
                instance = Path(config.from_environment()["INSTANCE_PATH"])
                services.down(instance)
                services.down_test_servers(instance)
            elif args.command == "run":
                return run()
            else:
                return run_procfile(args)
        except KeyboardInterrupt:
            return 130
        except StepFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
