"""The WebSocket slots of a web process: caps in all and per organization, given back on close."""

from webapp.api.ws.slots import Slots


def test_an_organization_past_its_cap_is_refused_and_others_go_on():
    slots = Slots()
    assert [slots.take(1, max_total=5, max_org=3) for _ in range(3)] == [None] * 3
    assert slots.take(1, max_total=5, max_org=3)[0] == 429
    assert slots.take(2, max_total=5, max_org=3) is None
    assert slots.take(3, max_total=5, max_org=3) is None
    assert slots.take(3, max_total=5, max_org=3)[0] == 503  # the process is full
    slots.give_back(1)
    assert slots.take(1, max_total=5, max_org=3) is None
