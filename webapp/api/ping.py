"""A constant answer: what the server costs before any work, the baseline of the HTTP benchmark."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from webapp.api.plumbing.spec import document

bp = Blueprint("ping", __name__)


class Pong(BaseModel):
    pong: Literal[True]


@bp.get("/ping")
@document(
    "A constant answer, touching neither the database nor Redis",
    tag="operations",
    responses={200: Pong},
    errors=(),
    auth=False,
)
def ping() -> Response:
    return jsonify({"pong": True})
