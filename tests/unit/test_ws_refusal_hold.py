"""An organization's sockets are refused at a bounded pace in each web process: one socket alone keeps
the fixed hold; many at once wait their organization's turn."""

from __future__ import annotations

import pytest

from webapp.api.ws.budget import REFUSAL_HOLD_MAX_SECONDS, RefusalPace


def test_one_socket_keeps_the_fixed_hold():
    pace = RefusalPace(per_second=100)
    # A refusal every 25 ms (the hold) is 40 a second: under the pace, each holds 25 ms.
    assert [pace.hold(1, 0.025, now=t * 0.025) for t in range(20)] == pytest.approx([0.025] * 20)


def test_many_sockets_of_one_organization_wait_their_turn_and_others_do_not():
    pace = RefusalPace(per_second=100)
    holds = [pace.hold(1, 0.025, now=0.0) for _ in range(40)]  # forty sockets refused at once
    assert holds[:3] == pytest.approx([0.025, 0.025, 0.025])
    assert holds[-1] == pytest.approx(0.39)  # the fortieth's turn comes 0.39 s on
    assert pace.hold(2, 0.025, now=0.0) == pytest.approx(0.025)  # another organization: its own pace
    assert max(pace.hold(1, 0.025, now=0.0) for _ in range(1000)) == REFUSAL_HOLD_MAX_SECONDS
    # Once the swarm stops, its turns do not outlast the longest hold.
    assert pace.hold(1, 0.025, now=REFUSAL_HOLD_MAX_SECONDS + 0.1) == pytest.approx(0.025)
    assert pace.hold(1, 0.0, now=0.0) == 0.0  # no pace set: no hold
