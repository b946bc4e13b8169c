"""Users of the caller's organization: admins list, create and delete them."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp.api.plumbing.errors import ApiError, not_found
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.spec import document, parse_body
from webapp.api.plumbing.writes import no_content
from webapp.api.schemas.common import Role, Strict
from webapp.core.timeutil import utcnow
from webapp.infra.db import get_session
from webapp.infra.redis_client import get_redis
from webapp.models import User
from webapp.security import accounts
from webapp.security.admission import current_principal, require_role
from webapp.security.passwords import hash_password


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=accounts.EMAIL_MAX_LENGTH, pattern=accounts.EMAIL_PATTERN)
    password: str = Field(min_length=accounts.PASSWORD_MIN_LENGTH, max_length=accounts.PASSWORD_MAX_LENGTH)
    role: Role = "viewer"


class UserOut(BaseModel):
    id: int
    org_id: int
    email: str
    role: Role


class UserList(BaseModel):
    items: list[UserOut]


bp = Blueprint("users", __name__, url_prefix="/users")

# User ids are integers: a larger one names no user (and would be a database error).
MAX_USER_ID = 2**31 - 1


@bp.get("")
@document("The organization's users", tag="users", responses={200: UserList})
@require_role("admin")
def list_() -> Response:
    users = get_session().scalars(
        select(User).where(User.org_id == current_principal().org_id).order_by(User.id)
    )
    return jsonify({"items": [user.to_dict() for user in users]})


@bp.post("")
@document(
    "Create a user in the organization",
    tag="users",
    body=UserCreate,
    responses={201: UserOut},
    errors=(400, 401, 403, 409),
)
@require_role("admin")
@idempotent
def create() -> tuple[Response, int]:
    data = parse_body(UserCreate)
    session = get_session()
    email = data.email.strip().lower()
    org_id = current_principal().org_id
    # Only this organization's users are looked at: another's are none of the caller's business.
    if session.scalar(select(User.id).where(User.org_id == org_id, func.lower(User.email) == email)):
        raise ApiError(409, "a user with this email already exists", details={"field": "email"})
    user = User(
        org_id=org_id,
        email=email,
        password_hash=hash_password(data.password),
        role=data.role,
    )
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ApiError(409, "a user with this email already exists", details={"field": "email"}) from exc
    return jsonify(user.to_dict()), 201


@bp.delete("/<int:user_id>")
@document(
    "Delete a user of the organization: every token issued to them is refused from the next request on",
    tag="users",
    responses={204: None},
    errors=(400, 401, 403, 404, 429),
)
@require_role("admin")
def delete(user_id: int) -> Response:
    principal = current_principal()
    session = get_session()
    user = session.get(User, user_id) if user_id <= MAX_USER_ID else None
    if user is None or user.org_id != principal.org_id:
        raise not_found("user")
    if user.id == principal.user_id:
        raise ApiError(400, "an admin cannot delete themselves", details={"field": "user_id"})
    accounts.delete_user(session, get_redis(), user, utcnow())
    return no_content()
