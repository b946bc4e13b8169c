"""Which analytics queries each organization asks most, so refresh jobs can warm them."""

from __future__ import annotations

import json
from typing import Any

import redis

TOP_N = 20


def popular_key(org_id: int) -> str:
    return f"an:popular:{org_id}"


def member(kind: str, params: dict[str, Any]) -> str:
    """How one query is named in the popularity set."""
    return json.dumps({"kind": kind, "params": params}, sort_keys=True, separators=(",", ":"), default=str)


def top(client: redis.Redis, org_id: int, n: int = TOP_N) -> list[dict[str, Any]]:
    """The organization's `n` most requested queries, most requested first."""
    return [json.loads(member) for member in client.zrevrange(popular_key(org_id), 0, n - 1)]
