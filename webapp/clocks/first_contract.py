"""The SLA targets of the first contract: first response and resolution hours per priority, the
platform's defaults overridden by organizations.sla_targets. The default SLA policy is built from them."""

from __future__ import annotations

import logging
import math
from typing import Any

log = logging.getLogger(__name__)

TARGET_KEYS = {"first_response": "first_response_hours", "resolution": "resolution_hours"}
DEFAULT_TARGETS: dict[str, dict[str, float]] = {
    "urgent": {"first_response_hours": 1.0, "resolution_hours": 4.0},
    "high": {"first_response_hours": 4.0, "resolution_hours": 24.0},
    "normal": {"first_response_hours": 8.0, "resolution_hours": 48.0},
    "low": {"first_response_hours": 24.0, "resolution_hours": 120.0},
}


def targets_for(configured: dict[str, Any] | None) -> dict[str, dict[str, float]]:
    """The defaults, overridden per priority and key by organizations.sla_targets where that is valid."""
    targets = {priority: dict(values) for priority, values in DEFAULT_TARGETS.items()}
    for priority, values in (configured or {}).items():
        if priority not in targets or not isinstance(values, dict):
            log.warning("ignoring SLA targets for unknown priority %r", priority)
            continue
        for key in TARGET_KEYS.values():
            hours = values.get(key)
            if hours is None:
                continue
            if (
                isinstance(hours, bool)
                or not isinstance(hours, int | float)
                or not math.isfinite(hours)
                or hours <= 0
            ):
                log.warning(
                    "ignoring SLA target %s.%s=%r: not a positive number of hours", priority, key, hours
                )
                continue
            targets[priority][key] = float(hours)
    return targets
