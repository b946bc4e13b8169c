"""Manual cache invalidation and background refresh, and what the analytics cache needs of the web process."""

from __future__ import annotations

import redis
from flask import Blueprint, Flask, Response, current_app, jsonify

from webapp.analytics import cache, generations
from webapp.analytics.popular import Tally
from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.idempotency import idempotent
from webapp.api.plumbing.jobs_submit import submit_job
from webapp.api.plumbing.spec import document
from webapp.api.schemas.common import JobAccepted
from webapp.infra.redis_client import copy_near, get_redis, near_view
from webapp.security.admission import current_principal, require_role

bp = Blueprint("cache", __name__, url_prefix="/analytics")


def init_app(app: Flask) -> None:
    """Generations and entries among the keys the near cache copies, and the count of its hits."""
    copy_near(app, cache.NEAR_PREFIXES)
    app.extensions["popular_tally"] = Tally()


def cache_shortcuts() -> cache.Shortcuts:
    """What makes this request's cache lookups cheaper: a near-cache view, and the tally of its hits."""
    return cache.Shortcuts(near_view(), current_app.extensions["popular_tally"])


@bp.delete("/cache")
@document("Invalidate every cached analytics answer of the organization", tag="cache", errors=(401, 403, 503))
@require_role("admin")
def invalidate() -> Response:
    try:
        generations.bump_all(get_redis(), current_principal().org_id)
    except redis.RedisError as exc:
        raise ApiError(503, "the cache is unavailable; nothing cached can be served meanwhile") from exc
    return jsonify({"invalidated": True, "families": list(generations.FAMILIES)})


@bp.post("/refresh-cache")
@document(
    "Recompute the organization's most requested queries in a job",
    tag="cache",
    responses={202: JobAccepted},
    errors=(401, 403, 429, 503),
)
@require_role("admin")
@idempotent
def refresh() -> tuple[Response, int, dict[str, str]]:
    return submit_job("cache_refresh", {})
