"""Write routes: PATCH bodies (the fields given, each validated, none null) and empty answers."""

from __future__ import annotations

from typing import Any

from flask import Response
from pydantic import BaseModel

from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.spec import parse_body


def parse_patch(model: type[BaseModel]) -> dict[str, Any]:
    """The given fields of the body (nested objects whole, with their defaults); 400 when none is given
    or one is null (a PATCH changes fields, it clears none)."""
    parsed = parse_body(model)
    dumped = parsed.model_dump()
    fields = {name: dumped[name] for name in parsed.model_fields_set}
    if not fields:
        raise ApiError(400, "nothing to change: give at least one field")
    for name, value in fields.items():
        if value is None:
            raise ApiError(400, f"{name} cannot be null", details={"field": name})
    return fields


def no_content() -> Response:
    """204 for a delete: no body, so no Content-Type either (as the document says)."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response
