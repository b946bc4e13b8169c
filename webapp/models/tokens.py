"""Tokens: the ones issued (with their families), and the revoked ones, the durable half of the
blocklist (Redis holds the fast half)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from webapp.core.vocabulary import TOKEN_TYPES
from webapp.models.base import Base
from webapp.models.tickets import one_of


class RevokedToken(Base):
    __tablename__ = "revoked_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The token's own exp: past it the token is refused as expired anyway, so the row can go.
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IssuedToken(Base):
    """Every token a login or a refresh issued, until it expires: its family (the login it descends
    from), so a reused refresh token or a logout revokes the whole family, and its user, so a deleted
    or disabled user's tokens are all revoked at once."""

    __tablename__ = "issued_tokens"
    __table_args__ = (CheckConstraint(one_of("type", TOKEN_TYPES), name="type"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    family: Mapped[str | None] = mapped_column(String(64), index=True)
    type: Mapped[str] = mapped_column(String(8))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # A refresh token is used once: the refresh that used it issued its successor.
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
