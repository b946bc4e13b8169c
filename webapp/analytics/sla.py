"""The first contract's SLA targets per organization and priority (the policy's starting point, and
what the analytics cache keys on); compliance itself is counted under the policy in force
(sla_compliance)."""

from __future__ import annotations

from webapp.clocks.first_contract import DEFAULT_TARGETS, TARGET_KEYS, targets_for

__all__ = ["DEFAULT_TARGETS", "TARGET_KEYS", "targets_for"]
