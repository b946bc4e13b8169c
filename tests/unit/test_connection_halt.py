"""A halted connection (its token revoked) sends nothing more, whoever tries: the socket's loop, its
queue, or the relay's direct write."""

from __future__ import annotations

from webapp.live.connection import Connection


def test_a_halted_connection_sends_nothing_and_queues_nothing() -> None:
    sent: list[str] = []
    direct: list[str] = []
    woken: list[bool] = []
    conn = Connection(
        org_id=1,
        send_raw=sent.append,
        wake=lambda: woken.append(True),
        abort=lambda: None,
        direct=lambda event, text: direct.append(text) or True,
    )
    conn.busy = True  # the loop is answering: a live event waits in the queue
    conn.offer({"id": "1-0", "type": "metric_update"}, '{"queued": 1}')
    assert len(conn.pending) == 1
    conn.halt()
    assert not conn.pending
    assert conn.send({"type": "subscription_data"}) is False
    conn.busy = False
    conn.offer({"id": "2-0", "type": "metric_update"}, '{"direct": 2}')
    assert conn.flush(lambda event: event) == 0
    assert (sent, direct, list(conn.pending)) == ([], [], [])
    # The close frame still goes out: the loop writes it through `guarded`, which a halt leaves.
    assert conn.guarded(sent.append, "close") is True
    assert sent == ["close"]
