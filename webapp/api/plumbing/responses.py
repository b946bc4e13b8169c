"""JSON responses that carry cached answers as the text they were stored as, without re-encoding."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app

from webapp.analytics.cache import RawJson


def _encode(value: Any) -> str:
    if isinstance(value, RawJson):
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


def json_object(*parts: dict[str, Any] | RawJson) -> Response:
    """One JSON object made of `parts` in order.

    A dict gives its members (a RawJson value is written as it is); a RawJson holding an object gives
    its members unparsed. The parts must not repeat a name.
    """
    members: list[str] = []
    for part in parts:
        if isinstance(part, RawJson):
            if not part.startswith("{"):
                raise TypeError("only a JSON object's members can be spliced")
            inner = part[1:-1]
            if inner:
                members.append(inner)
        elif not any(isinstance(value, RawJson) for value in part.values()):
            inner = json.dumps(part, separators=(",", ":"), default=str)[1:-1]  # one call for all
            if inner:
                members.append(inner)
        else:
            members.extend(f"{json.dumps(name)}:{_encode(value)}" for name, value in part.items())
    return current_app.response_class("{" + ",".join(members) + "}\n", mimetype="application/json")
