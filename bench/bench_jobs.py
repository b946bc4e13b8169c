"""Job round trip: REST submit to the WebSocket's job_update "succeeded", against a bare Celery round trip.

gunicorn (the Procfile's web line) and one Celery worker (the Procfile's worker line) run against
scratch PostgreSQL and Redis. The job is POST /api/v1/analytics/refresh-cache with an admin token,
for an organization with no popular queries yet, so what is timed is the job platform itself: the
jobs row, enqueue after commit, the worker's state transitions, each published to the events stream
and relayed to the open WebSocket. The bare round trip is `ops.noop` sent with send_task and awaited
through the result backend with .get(): broker, worker and backend with nothing of ours around them.
Both run one at a time (--runs each, after --warmup), alternating. Results: bench/results/jobs.json.

    python -m bench.bench_jobs [--runs 50] [--warmup 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import time
from typing import Any

import websocket
from celery import Celery

from bench.common import Stack, latency_summary, platform_stack, print_table, write_results

TARGET_RATIO = 2.0


class JobClient:
    """One admin's persistent HTTP connection and open WebSocket to the server."""

    def __init__(self, stack: Stack) -> None:
        self.auth = {"Authorization": f"Bearer {stack.admin_token}"}
        self.http = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{stack.port}/api/v1/ws/analytics/{stack.org_id}",
            header=[f"Authorization: Bearer {stack.admin_token}"],
            timeout=30,
        )
        hello = json.loads(self.ws.recv())
        assert hello["type"] == "connected", hello

    def round_trip(self) -> dict[str, float]:
        """Submit one refresh job and wait for its succeeded job_update: total, and submit alone (ms)."""
        started = time.perf_counter()
        self.http.request("POST", "/api/v1/analytics/refresh-cache", headers=self.auth)
        response = self.http.getresponse()
        body = json.loads(response.read())
        submitted = time.perf_counter()
        if response.status != 202 or body.get("deduplicated"):
            raise RuntimeError(f"submit answered {response.status}: {body}")
        job_id = body["job_id"]
        while True:
            message = json.loads(self.ws.recv())
            if message["type"] != "job_update" or message["data"].get("job_id") != job_id:
                continue
            state = message["data"]["state"]
            if state == "succeeded":
                done = time.perf_counter()
                return {"total_ms": (done - started) * 1000, "submit_ms": (submitted - started) * 1000}
            if state in ("failed", "cancelled"):
                raise RuntimeError(f"job {job_id} {state}: {message['data']}")

    def close(self) -> None:
        self.ws.close()
        self.http.close()


def bare_round_trip(celery: Celery) -> float:
    """send_task("ops.noop") and .get() its result: milliseconds."""
    started = time.perf_counter()
    result = celery.send_task("ops.noop")
    assert result.get(timeout=30) is True
    elapsed = (time.perf_counter() - started) * 1000
    result.forget()
    return elapsed


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start web and worker, then time both round trips, alternating."""
    with platform_stack("bench_jobs") as stack:
        worker_command = stack.start_worker()
        web_command = stack.start_web()
        celery = Celery(broker=stack.redis_url, backend=stack.redis_url)
        # The platform's queue and serializers (celeryconfig reads the environment, so not imported).
        celery.conf.update(
            task_default_queue="default",
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
        )
        client = JobClient(stack)
        try:
            for _ in range(args.warmup):
                client.round_trip()
                bare_round_trip(celery)
            jobs: list[dict[str, float]] = []
            bare: list[float] = []
            for _ in range(args.runs):
                jobs.append(client.round_trip())
                bare.append(bare_round_trip(celery))
        finally:
            client.close()
            celery.close()
    job = latency_summary([j["total_ms"] for j in jobs])
    submit = latency_summary([j["submit_ms"] for j in jobs])
    noop = latency_summary(bare)
    ratio = job["p50_ms"] / noop["p50_ms"]
    return {
        "runs": args.runs,
        "web_command": web_command,
        "worker_command": worker_command,
        "job": "POST /api/v1/analytics/refresh-cache (no popular queries) -> WebSocket job_update succeeded",
        "bare": "send_task('ops.noop').get() through the Redis result backend",
        "results": {"job round trip": job, "of which REST submit": submit, "bare Celery": noop},
        "p50_ratio": ratio,
        "target_p50_ratio": TARGET_RATIO,
        "passed": ratio <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50, help="timed round trips of each kind")
    parser.add_argument("--warmup", type=int, default=5, help="untimed round trips of each kind first")
    args = parser.parse_args()

    out = run(args)
    print_table(
        "Round trips, one at a time (ms)",
        ["what", "n", "p50", "p90", "p99", "max"],
        [
            [name, r["n"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"]]
            for name, r in out["results"].items()
        ],
    )
    verdict = "pass" if out["passed"] else "MISS"
    print(f"\njob p50 / bare Celery p50 = {out['p50_ratio']:.2f} (target <= {TARGET_RATIO}: {verdict})")
    path = write_results("jobs", out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
