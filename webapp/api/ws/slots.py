"""Open sockets of this web process, in all and per organization: past a cap, refused before the upgrade."""

from __future__ import annotations

import threading


class Slots:
    """Open sockets of this process, in all and per organization: each holds one of its threads, so
    past a cap a new one is refused before the upgrade, and REST keeps threads to answer with."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._per_org: dict[int, int] = {}

    def take(self, org_id: int, max_total: int, max_org: int) -> tuple[int, str] | None:
        """None when a slot was taken; else the status and message that refuse the socket."""
        with self._lock:
            if self._per_org.get(org_id, 0) >= max_org:
                return 429, f"the organization has {max_org} sockets open on this server; close one first"
            if self._total >= max_total:
                return 503, "this server holds as many sockets as it can; try again shortly"
            self._total += 1
            self._per_org[org_id] = self._per_org.get(org_id, 0) + 1
        return None

    def give_back(self, org_id: int) -> None:
        """Free the slot a closed socket of `org_id` held."""
        with self._lock:
            self._total -= 1
            left = self._per_org.get(org_id, 1) - 1
            if left:
                self._per_org[org_id] = left
            else:
                self._per_org.pop(org_id, None)


# The process's slots: every socket of this web process takes one.
SLOTS = Slots()
