"""The OpenAPI 3.1 document, built from the routes and the pydantic models that validate them."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from pydantic import BaseModel

from webapp.api.plumbing import idempotency
from webapp.api.plumbing.errors import BODY_METHODS, CODES
from webapp.api.plumbing.spec import RouteDoc
from webapp.api.schemas.common import ErrorResponse

_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")
_CONVERTER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"}}
REF = "#/components/schemas/{model}"


class _Schemas:
    """Collects model schemas into components, returning references."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str = "validation") -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        for name, definition in schema.pop("$defs", {}).items():
            self.components.setdefault(name, definition)
        self.components.setdefault(model.__name__, schema)
        return {"$ref": REF.format(model=model.__name__)}


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        params.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": {k: v for k, v in prop.items() if k != "title"},
                **({"description": prop["description"]} if "description" in prop else {}),
            }
        )
    return params


IDEMPOTENCY_PARAMETER = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "a retry with the same key and request within IDEMPOTENCY_KEY_HOURS (24) gets the first "
    "answer again (with Idempotent-Replayed: true) and writes nothing; the same key with another request "
    "is 422",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]{1,255}$"},
}
# The answers a key adds: its request carried out but the answer lost (409), the key reused (422).
IDEMPOTENCY_ERRORS = (409, 422)
# What any route may answer whatever it does: a request line or headers the server cannot take (400,
# 414, 431: gunicorn answers them before the application), a method it does not serve (405), a body
# over the route's limit, sent even where the route reads none (413), a bug (500), and the database or
# Redis out of reach (503, with Retry-After).
ANY_ROUTE_ERRORS = (400, 405, 413, 414, 431, 500, 503)
# What a route that takes a token may answer too: no valid token (401), its organization's request
# budget spent (429, with Retry-After).
TOKEN_ERRORS = (401, 429)
# What a route with a body may answer too: a body over its limit (413), of another media type (415).
BODY_ERRORS = (413, 415)
# What an operation whose method may carry a body (BODY_METHODS) may answer whatever it reads: every
# such body is read before the view (errors._read_whole_body), and one with a Content-Encoding (gzip,
# deflate) is refused, 415, even where the route reads no body.
ENCODED_BODY_ERRORS = (415,)


# Response headers the document names (components.headers), and the ones each status carries
# wherever it is answered (a refusal to come back later says when, a 401 the scheme, an accepted job
# or delivery where to follow it); a creation's Location only where its route names it (doc.headers).
HEADERS: dict[str, dict[str, Any]] = {
    "Retry-After": {
        "description": "seconds to wait before asking again",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Location": {
        "description": "the created object's URL, or the job's status URL, as a path from the server's root",
        "schema": {"type": "string", "format": "uri-reference"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer of an earlier request with the same "
        "Idempotency-Key (nothing was done again)",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "WWW-Authenticate": {"description": "the scheme to authenticate with", "schema": {"type": "string"}},
    "ETag": {"description": "the file's sha256, quoted", "schema": {"type": "string"}},
    "Last-Modified": {"description": "when the file was written", "schema": {"type": "string"}},
    "Content-Disposition": {
        "description": "attachment, with the file's name",
        "schema": {"type": "string"},
    },
    "Accept-Ranges": {
        "description": "bytes: parts of the file may be asked for",
        "schema": {"type": "string"},
    },
    "Content-Range": {"description": "the part of the file sent", "schema": {"type": "string"}},
}
STATUS_HEADERS: dict[int, tuple[str, ...]] = {
    202: ("Location", "Retry-After"),
    401: ("WWW-Authenticate",),
    429: ("Retry-After",),
    503: ("Retry-After",),
}


# What an operation's description says of the role it needs (require_role's minimum).
ROLE_TEXT = {
    "viewer": "Any role may call it (viewer, agent or admin).",
    "agent": "Needs the agent or admin role (a viewer's token is 403).",
    "admin": "Needs the admin role (a viewer's or agent's token is 403).",
    "refresh": "Takes a refresh token (of any role) instead of an access token.",
}


def _with_headers(entry: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    if names:
        entry["headers"] = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
    return entry


def _operation(
    doc: RouteDoc,
    path_params: list[dict[str, Any]],
    schemas: _Schemas,
    *,
    method: str,
    idempotent: bool = False,
    role: str | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": doc.summary, "tags": [doc.tag], "parameters": list(path_params)}
    described = [doc.description] if doc.description else []
    if role is not None:
        # Which tokens the operation takes (a lesser role is 403), in words and as an extension field.
        op["x-required-role"] = role
        described.append(ROLE_TEXT[role])
    if described:
        op["description"] = " ".join(described)
    if idempotent:
        op["parameters"].append(IDEMPOTENCY_PARAMETER)
    op["parameters"] += list(doc.parameters)
    if doc.auth == "optional":
        op["security"] = [{}, {"bearerAuth": []}]
    elif doc.auth:
        op["security"] = [{"bearerAuth": []}]
    else:
        op["security"] = []
    if doc.query is not None:
        op["parameters"] += _query_parameters(doc.query)
    if doc.body is not None:
        content = {ctype: {"schema": schemas.ref(doc.body)} for ctype in doc.body_content_types[:1]}
        for ctype in doc.body_content_types[1:]:
            content[ctype] = {"schema": {"type": "string"}}
        op["requestBody"] = {"required": not doc.body_optional, "content": content}
    responses: dict[str, Any] = {}
    for status, model in (doc.responses or {200: None}).items():
        entry: dict[str, Any] = {"description": CODES.get(status, "success") if status >= 400 else "success"}
        if status == 204:
            entry["description"] = "done; no content"
        elif status == 304:
            entry["description"] = "not modified; no content"
        elif status == 101:
            entry["description"] = "switching protocols: the WebSocket is open"
        elif model is not None:
            entry["content"] = {"application/json": {"schema": schemas.ref(model, mode="serialization")}}
        elif status in doc.binary:
            types = doc.binary[status]
            entry["content"] = {
                # A JSON file is still JSON to a client that parses the response.
                media: {
                    "schema": {} if media == "application/json" else {"type": "string", "format": "binary"}
                }
                for media in ((types,) if isinstance(types, str) else types)
            }
        else:
            entry["content"] = {"application/json": {"schema": {"type": "object"}}}
        names = (*STATUS_HEADERS.get(status, ()), *doc.headers.get(status, ()))
        if idempotent and 200 <= status < 300:
            names = (*names, "Idempotent-Replayed")
        responses[str(status)] = _with_headers(entry, tuple(dict.fromkeys(names)))
    error_ref = schemas.ref(ErrorResponse, mode="serialization")
    errors = {*doc.errors, *ANY_ROUTE_ERRORS, *(IDEMPOTENCY_ERRORS if idempotent else ())}
    if doc.auth is True:
        errors.update(TOKEN_ERRORS)
    elif doc.auth == "optional":  # a token that is not valid is ignored: never a 401
        errors.add(429)
    if doc.body is not None:
        errors.update(BODY_ERRORS)
    if method in BODY_METHODS:
        errors.update(ENCODED_BODY_ERRORS)
    for status in sorted(errors):
        responses.setdefault(
            str(status),
            _with_headers(
                {
                    "description": CODES.get(status, "error"),
                    "content": {"application/json": {"schema": error_ref}},
                },
                STATUS_HEADERS.get(status, ()),
            ),
        )
    op["responses"] = responses
    return op


def build(app: Flask, prefix: str = "/api/v1") -> dict[str, Any]:
    """OpenAPI for every documented route under `prefix`."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(prefix):
            continue
        view = app.view_functions[rule.endpoint]
        doc: RouteDoc | None = getattr(view, "__route_doc__", None)
        if doc is None:
            continue
        path_params = []
        for match in _PARAM.finditer(rule.rule):
            path_params.append(
                {
                    "name": match["name"],
                    "in": "path",
                    "required": True,
                    "schema": (
                        {"type": "string", "enum": list(doc.path_enums[match["name"]])}
                        if match["name"] in doc.path_enums
                        else _CONVERTER_TYPES.get(match["conv"] or "", {"type": "string"})
                    ),
                }
            )
        path = _PARAM.sub(lambda m: "{" + m["name"] + "}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = _operation(
                doc,
                path_params,
                schemas,
                method=method,
                idempotent=getattr(view, "__idempotent__", False),
                role=doc.role or getattr(view, "__required_role__", None),
            )
            operation["operationId"] = f"{rule.endpoint.replace('.', '_')}_{method.lower()}"
            paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Support-ticket analytics API",
            "version": "1.0.0",
            "description": "Ticket events in, analytics out: time series, aggregations, "
            "dashboards, SLA, exports, jobs and live updates.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "headers": HEADERS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
