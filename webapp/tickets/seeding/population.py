"""The shape of the synthetic population: vocabularies, shares, typical durations and arrival weights."""

from __future__ import annotations

import numpy as np

CATEGORIES = (
    "billing",
    "technical",
    "account",
    "shipping",
    "returns",
    "product",
    "feature_request",
    "general",
)
AGENTS = (
    "alice.martin",
    "bruno.costa",
    "chen.wei",
    "dana.kowalski",
    "emeka.obi",
    "fatima.zahra",
    "gustav.berg",
    "hana.sato",
    "ivan.petrov",
    "julia.romero",
    "kofi.mensah",
    "lena.fischer",
)
SUBJECTS = {
    "billing": ("Charged twice this month", "Invoice shows the wrong VAT number", "Refund not received"),
    "technical": ("App crashes on login", "Sync stuck at 99%", "Error 500 when exporting", "API timeouts"),
    "account": ("Cannot reset my password", "Please merge two accounts", "Two-factor code never arrives"),
    "shipping": ("Parcel has not arrived", "Tracking number does not work", "Wrong delivery address"),
    "returns": ("How do I return an item?", "Return label missing", "Item arrived damaged"),
    "product": ("Which plan includes SSO?", "Size chart question", "Compatibility with older models"),
    "feature_request": ("Dark mode please", "Export to Google Sheets", "Bulk edit for tags"),
    "general": ("Question about your hours", "Feedback on the new website", "Partnership enquiry"),
}

# Shares follow the order of the matching vocabulary.
PRIORITY_SHARE = (0.30, 0.45, 0.18, 0.07)
CHANNEL_SHARE = (0.36, 0.20, 0.11, 0.20, 0.05, 0.08)
CATEGORY_SHARE = (0.17, 0.22, 0.12, 0.13, 0.09, 0.10, 0.05, 0.12)
AGENT_LOAD = (1.4, 1.3, 1.2, 1.1, 1.0, 1.0, 1.0, 0.9, 0.9, 0.8, 0.7, 0.6)
UNASSIGNED_SHARE = 0.05
PRE_ASSIGNED_SHARE = 0.4  # routed by a rule at creation; the others are assigned at triage
REASSIGNED_SHARE = 0.08
ESCALATED_SHARE = 0.05
PENDING_SHARE, ON_HOLD_SHARE = 0.35, 0.05  # status set with the first response
REOPENED_SHARE = 0.06
RERESOLVED_SHARE = 0.8
CLOSED_SHARE = 0.75
NULL_SENTIMENT_SHARE = 0.10
NIGHT_WAIT_SHARE = 0.6  # non-urgent tickets filed outside 08-18 local that wait for the morning

# Median hours by priority (low, normal, high, urgent), scaled by channel and category.
FIRST_RESPONSE_MEDIAN = np.array([10.0, 4.0, 1.5, 0.5])
RESOLUTION_MEDIAN = np.array([48.0, 20.0, 8.0, 3.0])
CHANNEL_SPEED = np.array([1.2, 0.35, 0.3, 1.0, 0.8, 1.0])
CATEGORY_EFFORT = np.array([0.8, 1.6, 0.7, 1.0, 0.9, 0.8, 1.3, 0.6])

HOUR_WEIGHT = np.array(
    [0.15, 0.10, 0.08, 0.07, 0.08, 0.12, 0.25, 0.45, 0.80, 1.00, 1.00, 0.95,
     0.80, 0.90, 1.00, 0.95, 0.85, 0.65, 0.50, 0.42, 0.38, 0.32, 0.25, 0.20]
)  # fmt: skip
WEEKDAY_WEIGHT = np.array([1.15, 1.05, 1.0, 1.0, 0.9, 0.42, 0.38])  # Monday first
GROWTH = 0.3  # the newest day sees 30% more tickets than the oldest
