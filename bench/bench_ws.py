"""Publish-to-client latency of the WebSocket relay with 200 connected clients of one organization.

gunicorn runs as the Procfile's web line says (gunicorn.conf.py: 2 gthread workers), except for
--threads, which must hold every socket (a socket keeps its thread); no Celery worker is needed.
--clients websocket-client connections of one organization, each read by its own thread in this
process, are spread by gunicorn over its workers. Two sources of metric_update, paced so that
events do not queue behind each other:

- relay: webapp.events.publish straight to the organization's stream, the event carrying the
  send time: XADD -> each worker's XREAD reader -> the socket's queue -> its thread -> the client.
- REST: POST /api/v1/tickets; the clock starts before the request, so the latency includes the
  request itself (commit, rollup update, publish) as well as the relay.

Then all but a tenth of the clients disconnect and the relay run is repeated, to show how the
fan-out's cost grows with the sockets per process. Every client must receive every event exactly
once; the latency is taken over every receipt. Results: bench/results/ws.json.

    python -m bench.bench_ws [--clients 200] [--events 200] [--rate 20] [--tickets 30] [--threads N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections import Counter
from typing import Any

import websocket

from bench.common import latency_summary, platform_stack, print_table, write_results


class Client:
    """One socket and the thread reading it: receipt latencies by event sequence number."""

    def __init__(self, port: int, org_id: int, token: str) -> None:
        self.ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}/api/v1/ws/analytics/{org_id}",
            header=[f"Authorization: Bearer {token}"],
            timeout=60,
        )
        hello = json.loads(self.ws.recv())
        assert hello["type"] == "connected", hello
        self.server_pid: int = hello["data"]["server_pid"]
        # (source, key) -> receipt times (perf_counter); the relay's events carry their send time.
        self.receipts: dict[tuple[str, Any], list[float]] = {}
        self.relay_ms: dict[str, list[float]] = {}
        self.error: str | None = None
        self.closing = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while True:
                raw = self.ws.recv()
                received = time.perf_counter()
                if not raw:
                    return  # the close frame
                message = json.loads(raw)
                if message["type"] != "metric_update":
                    continue
                data = message["data"]
                if "bench_seq" in data:
                    phase = data["bench_phase"]
                    self.receipts.setdefault((phase, data["bench_seq"]), []).append(received)
                    self.relay_ms.setdefault(phase, []).append((received - data["sent_at"]) * 1000)
                elif "ticket_id" in data:
                    self.receipts.setdefault(("rest", data["ticket_id"]), []).append(received)
        except websocket.WebSocketConnectionClosedException:
            pass
        except Exception as exc:
            if not self.closing:
                self.error = repr(exc)

    def close(self) -> None:
        """Send a close frame; the reading thread ends on the server's answer."""
        self.closing = True
        self.ws.send_close()
        self.thread.join(5)
        self.ws.shutdown()


def connect_all(port: int, org_id: int, token: str, count: int) -> list[Client]:
    """`count` clients, connected 20 at a time."""
    clients: list[Client] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            client = Client(port, org_id, token)
        except Exception as exc:
            errors.append(repr(exc))
            return
        with lock:
            clients.append(client)

    for start in range(0, count, 20):
        batch = [threading.Thread(target=one) for _ in range(min(20, count - start))]
        for thread in batch:
            thread.start()
        for thread in batch:
            thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed to connect, first: {errors[0]}")
    return clients


def relay_phase(redis_client: Any, org_id: int, phase: str, events_n: int, rate: float) -> None:
    """Publish `events_n` metric_update events straight to the stream, paced, each with its send time."""
    from webapp.live import events

    gap = 1 / rate
    due = time.perf_counter()
    for seq in range(events_n):
        due += gap
        events.publish(
            redis_client,
            org_id,
            "metric_update",
            {"metrics": [], "bench_phase": phase, "bench_seq": seq, "sent_at": time.perf_counter()},
        )
        time.sleep(max(0.0, due - time.perf_counter()))


def rest_phase(port: int, token: str, tickets: int, rate: float) -> dict[int, float]:
    """Create tickets over REST, paced: ticket id -> perf_counter() just before its request."""
    sent: dict[int, float] = {}
    gap = 1 / rate
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for _ in range(tickets):
        started = time.perf_counter()
        conn.request("POST", "/api/v1/tickets", body=b"{}", headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 201:
            raise RuntimeError(f"POST /api/v1/tickets answered {response.status}: {body[:200]!r}")
        ticket_id = json.loads(body)["id"]
        sent[ticket_id] = started
        time.sleep(max(0.0, gap - (time.perf_counter() - started)))
    conn.close()
    return sent


def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = args.threads or args.clients + 16
    # gunicorn reads GUNICORN_CMD_ARGS after gunicorn.conf.py: only the thread count changes. The
    # socket caps rise with it: one web process may be handed every client of the one organization.
    caps = str(args.clients)
    extra_env = {
        "GUNICORN_CMD_ARGS": f"--threads {threads}",
        "WS_MAX_SOCKETS_PER_PROCESS": caps,
        "WS_MAX_SOCKETS_PER_ORG": caps,
    }
    with platform_stack("bench_ws", extra_env=extra_env) as stack:
        command = stack.start_web()
        started = time.perf_counter()
        clients = connect_all(stack.port, stack.org_id, stack.admin_token, args.clients)
        connect_s = time.perf_counter() - started
        per_worker = Counter(c.server_pid for c in clients)
        print(f"{len(clients)} clients connected in {connect_s:.1f}s, per worker: {dict(per_worker)}")
        time.sleep(0.5)
        relay_phase(stack.redis, stack.org_id, "relay", args.events, args.rate)
        rest_sent = rest_phase(stack.port, stack.admin_token, args.tickets, args.rate / 4)
        time.sleep(1.0)  # the last events' receipts
        # The same with a tenth of the clients still connected: how the fan-out's cost grows.
        few = clients[: max(1, len(clients) // 10)]
        for client in clients[len(few) :]:
            client.close()
        time.sleep(0.5)
        relay_phase(stack.redis, stack.org_id, "relay-few", args.events // 2, args.rate)
        time.sleep(1.0)
        for client in few:
            client.close()
    expected = {("relay", seq) for seq in range(args.events)} | {("rest", t) for t in rest_sent}
    expected_few = {("relay-few", seq) for seq in range(args.events // 2)}
    missing = sum(len(expected - set(c.receipts)) for c in clients)
    missing += sum(len(expected_few - set(c.receipts)) for c in few)
    duplicates = sum(len(times) - 1 for c in clients for times in c.receipts.values())
    errors = [c.error for c in clients if c.error]
    relay = [ms for c in clients for ms in c.relay_ms.get("relay", [])]
    relay_few = [ms for c in few for ms in c.relay_ms.get("relay-few", [])]
    rest = [
        (times[0] - rest_sent[key]) * 1000
        for c in clients
        for (source, key), times in c.receipts.items()
        if source == "rest" and key in rest_sent
    ]
    return {
        "clients": len(clients),
        "threads_per_worker": threads,
        "clients_per_worker": {str(pid): n for pid, n in per_worker.items()},
        "connect_seconds": connect_s,
        "events": args.events,
        "rate_per_s": args.rate,
        "tickets": args.tickets,
        "web_command": command,
        "missing_receipts": missing,
        "duplicate_receipts": duplicates,
        "client_errors": errors[:5],
        "results": {
            f"relay, {len(clients)} clients": latency_summary(relay),
            f"REST ticket create, {len(clients)} clients": latency_summary(rest),
            f"relay, {len(few)} clients": latency_summary(relay_few),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200, help="connected clients (default 200)")
    parser.add_argument("--events", type=int, default=200, help="events published to the stream")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second (REST: a quarter)")
    parser.add_argument("--tickets", type=int, default=30, help="tickets created over REST")
    parser.add_argument("--threads", type=int, default=0, help="gunicorn threads per worker (clients + 16)")
    args = parser.parse_args()

    out = run(args)
    rows = [
        [name, r["n"], r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"]]
        for name, r in out["results"].items()
    ]
    print_table(
        f"metric_update publish-to-client latency, {out['clients']} clients of one organization (ms)",
        ["source", "receipts", "p50", "p90", "p99", "max"],
        rows,
    )
    print(
        f"\nmissing receipts {out['missing_receipts']}, duplicates {out['duplicate_receipts']},"
        f" client errors {len(out['client_errors'])}; clients per worker {out['clients_per_worker']}"
    )
    path = write_results("ws", out)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
