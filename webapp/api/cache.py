"""Manual cache invalidation and background refresh."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from webapp.analytics import cache
from webapp.api.plumbing.errors import ApiError
from webapp.api.plumbing.jobs_submit import submit_job
from webapp.api.plumbing.spec import document
from webapp.api.schemas.common import JobAccepted
from webapp.infra.redis_client import get_redis
from webapp.security.auth import current_principal, require_role

bp = Blueprint("cache", __name__, url_prefix="/analytics")


@bp.delete("/cache")
@document("Invalidate every cached analytics answer of the organization", tag="cache", errors=(401, 403, 503))
@require_role("admin")
def invalidate() -> Response:
    import redis

    try:
        cache.bump_all(get_redis(), current_principal().org_id)
    except redis.RedisError as exc:
        raise ApiError(503, "the cache is unavailable; nothing cached can be served meanwhile") from exc
    return jsonify({"invalidated": True, "families": list(cache.FAMILIES)})


@bp.post("/refresh-cache")
@document(
    "Recompute the organization's most requested queries in a job",
    tag="cache",
    responses={202: JobAccepted},
    errors=(401, 403, 503),
)
@require_role("admin")
def refresh() -> tuple[Response, int, dict[str, str]]:
    return submit_job("cache_refresh", {})
