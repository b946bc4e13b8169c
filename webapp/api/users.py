"""Users of the caller's organization: admins list and create them."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.spec import document, parse_body
from webapp.api.schemas.common import Role, Strict
from webapp.infra.db import get_session
from webapp.models import User
from webapp.security.admission import current_principal, require_role
from webapp.security.passwords import hash_password


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=8, max_length=1024)
    role: Role = "viewer"


class UserOut(BaseModel):
    id: int
    org_id: int
    email: str
    role: Role


class UserList(BaseModel):
    items: list[UserOut]


bp = Blueprint("users", __name__, url_prefix="/users")


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
