"""Request parsing with pydantic models, and the route metadata the OpenAPI document is built from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Flask, request
from pydantic import BaseModel, ValidationError

from webapp.api.plumbing.errors import ApiError, pydantic_details, pydantic_message
from webapp.core import strict_json

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_ERRORS = (400, 401, 403, 404, 429)


@dataclass
class RouteDoc:
    summary: str
    tag: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_content_types: tuple[str, ...] = ("application/json",)
    body_optional: bool = False
    responses: dict[int, type[BaseModel] | None] = field(default_factory=dict)
    errors: tuple[int, ...] = DEFAULT_ERRORS
    # "optional": the route's own credential is a signed link, a bearer token may still be sent.
    auth: bool | Literal["optional"] = True
    binary: dict[int, str | tuple[str, ...]] = field(default_factory=dict)
    # Allowed values of path parameters that name a kind of thing rather than an object.
    path_enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Response headers by status beyond those every such status carries (openapi.STATUS_HEADERS).
    headers: dict[int, tuple[str, ...]] = field(default_factory=dict)
    # Parameters the view reads itself (OpenAPI parameter objects), documented but not a query model.
    parameters: tuple[dict[str, Any], ...] = ()
    # A longer description of the operation (Markdown).
    description: str | None = None
    # The least role the operation takes, for a view that authenticates itself (require_role says it
    # for the others).
    role: str | None = None


def document(
    summary: str,
    *,
    tag: str,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    body_content_types: tuple[str, ...] = ("application/json",),
    body_optional: bool = False,
    responses: dict[int, type[BaseModel] | None] | None = None,
    errors: tuple[int, ...] = DEFAULT_ERRORS,
    auth: bool | Literal["optional"] = True,
    binary: dict[int, str | tuple[str, ...]] | None = None,
    path_enums: dict[str, tuple[str, ...]] | None = None,
    headers: dict[int, tuple[str, ...]] | None = None,
    parameters: tuple[dict[str, Any], ...] = (),
    description: str | None = None,
    role: str | None = None,
) -> Callable[[F], F]:
    """Attach what the OpenAPI document says of this view (the same models validate its input)."""

    def decorator(view: F) -> F:
        view.__route_doc__ = RouteDoc(  # type: ignore[attr-defined]
            summary=summary,
            tag=tag,
            query=query,
            body=body,
            body_content_types=body_content_types,
            body_optional=body_optional,
            responses=responses or {},
            errors=errors,
            auth=auth,
            binary=binary or {},
            path_enums=path_enums or {},
            headers=headers or {},
            parameters=parameters,
            description=description,
            role=role,
        )
        return view

    return decorator


def _field(error: Mapping[str, Any]) -> str:
    """The field a validation error is about: the one its message names, else the innermost name in
    its location (for an unknown key, the object that refused it)."""
    context = error.get("ctx") or {}
    if "field" in context:
        return str(context["field"])
    if "discriminator" in context:
        return str(context["discriminator"]).strip("'")
    names = [part for part in error["loc"] if isinstance(part, str)]
    if error["type"] == "extra_forbidden" and len(names) > 1:
        return names[-2]
    return names[-1] if names else "body"


def parse_model(model: type[M], data: Any) -> M:
    """`data` validated by `model`, or a 400 naming the field (details.field) and every error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        field = _field(exc.errors(include_url=False)[0])
        raise ApiError(400, pydantic_message(exc), details={"field": field, **pydantic_details(exc)}) from exc


def check_text(value: str, where: str) -> None:
    """Refuse text PostgreSQL cannot store: NUL characters and unpaired surrogates."""
    if "\x00" in value:
        raise ApiError(400, f"{where} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(400, f"{where} contains invalid Unicode (an unpaired surrogate)") from exc


def check_json_text(data: Any, where: str) -> None:
    """check_text on every string (keys too) of a decoded JSON document."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def json_body() -> dict[str, Any]:
    """The request's JSON body, an object, or a 400/415 that says what is wrong with it."""
    if not request.data:
        raise ApiError(400, "a JSON body is required")
    if not request.is_json:
        raise ApiError(415, "the body must be JSON (Content-Type: application/json)")
    try:
        data = strict_json.loads(request.get_data(cache=True))
    except strict_json.JsonError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the JSON body must be an object")
    check_json_text(data, "the body")
    return data


def parse_body(model: type[M]) -> M:
    """Validate the JSON body against `model`."""
    return parse_model(model, json_body())


def parse_query(model: type[M]) -> M:
    """Validate the query string against `model`; repeated keys are refused."""
    args: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        if len(values) > 1:
            raise ApiError(
                400, f"query parameter {key!r} is given more than once; use a comma-separated list"
            )
        check_text(key + values[0], f"query parameter {key!r}")
        args[key] = values[0]
    return parse_model(model, args)


def refuse_undeclared_query(app: Flask) -> None:
    """A route whose document declares no query parameters refuses any (400), as the routes that
    declare some refuse unknown ones (but a download link, which ignores what mail clients add);
    routes open to anyone (health, ping, the document and its page,
    login: a probe's or a link's cache-buster is no mistake) and WebSocket handshakes (ticket, token,
    last_event_id) are left alone. SECURITY.md names them; test_bad_inputs.py holds the two equal."""

    @app.before_request
    def check() -> None:
        if not request.args or request.headers.get("Upgrade", "").lower() == "websocket":
            return
        view = app.view_functions.get(request.endpoint or "")
        doc: RouteDoc | None = getattr(view, "__route_doc__", None)
        if doc is None or doc.query is not None or not doc.auth:
            return
        name = next(iter(request.args))
        raise ApiError(
            400, f"unknown query parameter {name!r}: this route takes none", details={"field": name}
        )


# JSON's white space (RFC 8259), around what a route that takes no body accepts as none.
_JSON_SPACE = b" \t\r\n"
_BOM = b"\xef\xbb\xbf"


def refuse_undeclared_body(app: Flask) -> None:
    """A route whose document declares no body refuses one (400), as routes with a body refuse fields
    they do not know: `POST /report-schedules/{id}/run {"x": 1}` ran the report, where every other
    body of those routes with an unknown field is a 400. Runs after the body was read (and bounded)
    by errors.init_app's hook."""

    @app.before_request
    def check_body() -> None:
        if request.method not in ("POST", "PUT", "PATCH"):
            return
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return  # its body is never read (errors.init_app), so not here either
        view = app.view_functions.get(request.endpoint or "")
        doc: RouteDoc | None = getattr(view, "__route_doc__", None)
        if doc is None or doc.body is not None or doc.body_optional:
            return
        if not _is_no_body(request.get_data(cache=True)):
            raise ApiError(400, "this route takes no body; send none (or {})")


def _is_no_body(data: bytes) -> bool:
    """Nothing, or a JSON {} or null (a client that sends `{}` with every POST), a UTF-8 byte order
    mark and JSON's white space around it allowed, as the decoder allows them."""
    text = data.removeprefix(_BOM).strip(_JSON_SPACE)
    if not text:
        return True
    try:
        return strict_json.loads(text) in ({}, None)
    except strict_json.JsonError:
        return False
