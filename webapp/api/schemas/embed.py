"""Request and response models of the embed-token route."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StrictInt

from webapp.api.schemas.analytics import Dimension, MetricName
from webapp.api.schemas.common import Strict

MIN_SECONDS = 60
MAX_SECONDS = 90 * 86400
MAX_ORIGINS = 10


def _port_in_range(origin: str) -> str:
    """An origin's port, when it names one, is a TCP port (1 to 65535)."""
    port = re.search(r":([0-9]+)$", origin)  # an IPv6 host ends in "]": its colons end nothing
    if port and not 1 <= int(port.group(1)) <= 65535:
        raise ValueError(f"the port {port.group(1)} of {origin!r} is not a TCP port (1 to 65535)")
    return origin


Origin = Annotated[
    str,
    Field(
        max_length=200,
        pattern=r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$",
        description="scheme://host[:port], nothing after it; a port is 1 to 65535",
    ),
    AfterValidator(_port_in_range),
]


class EmbedTokenRequest(Strict):
    """The view to show, its locked filters, how long the link works and who may frame it."""

    view: Literal["overview", "time-series"] = Field(
        description="overview: the dashboard's KPIs, charts and distributions; time-series: one metric"
    )
    metric: MetricName | None = Field(
        default=None, description="the metric of a time-series view (required there)"
    )
    filters: dict[Dimension, str | list[str | None]] = Field(
        default_factory=dict,
        description="dimension -> value list (or comma-separated string), locked: the view cannot change it",
    )
    expires_in: StrictInt = Field(ge=MIN_SECONDS, le=MAX_SECONDS, description="seconds the link works")
    frame_ancestors: list[Origin] = Field(
        default_factory=list,
        max_length=MAX_ORIGINS,
        description="origins allowed to show the view in a frame (default: this site only)",
    )


class EmbedToken(BaseModel):
    """The link and what it shows."""

    url: str = Field(description="the embed page; the link is the credential, share it as such")
    view: Literal["overview", "time-series"]
    metric: MetricName | None
    filters: dict[str, list[str | None]]
    frame_ancestors: list[str]
    expires_at: str
