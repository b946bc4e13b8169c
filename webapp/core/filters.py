"""Dimension filters as clients write them, parsed and checked against the vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webapp.core.vocabulary import DIMENSION_VALUES, DIMENSIONS

# Parsed filters: dimension -> the values allowed (None: unassigned), sorted.
Filters = dict[str, list[str | None]]
# In a filter, this value of assigned_to stands for "unassigned" (in double quotes, a query string's
# `"null"` is an assignee of that name).
UNASSIGNED = "null"
MAX_FILTER_VALUES = 100
MAX_VALUE_LENGTH = 200


class FilterError(ValueError):
    """A filter that names an unknown dimension or value; `field` is where."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class Quoted(str):
    """A value written in double quotes: taken as written (`"null"` is an assignee named null)."""

    __slots__ = ()


def split_values(raw: str, name: str) -> list[str]:
    """A comma-separated list of values. A value that begins with a double quote runs to the quote
    that closes it, commas included, a quote inside it doubled, as in CSV: `"returns, damaged",billing`;
    a quote anywhere else is an ordinary character (`24" monitors`). Spaces around values, quoted or
    not, are dropped (categories and assignees are stored without). Quoted values come back as
    `Quoted`."""
    if '"' not in raw:
        return [part.strip() for part in raw.split(",")]
    values: list[str] = []
    i, n = 0, len(raw)
    while True:
        while i < n and raw[i] == " ":
            i += 1
        if i < n and raw[i] == '"':
            text: list[str] = []
            i += 1
            while True:
                close = raw.find('"', i)
                if close < 0:
                    raise FilterError(
                        f"filter {name!r} opens a double-quoted value it does not close"
                        ' ("a, b" in double quotes is one value, a quote inside it doubled)',
                        name,
                    )
                text.append(raw[i:close])
                if raw.startswith('""', close):
                    text.append('"')
                    i = close + 2
                    continue
                i = close + 1
                break
            comma = raw.find(",", i)
            rest = raw[i:] if comma < 0 else raw[i:comma]
            if rest.strip():
                raise FilterError(f"filter {name!r} has text after a quoted value: {rest.strip()!r}", name)
            values.append(Quoted("".join(text).strip()))
        else:
            comma = raw.find(",", i)
            values.append((raw[i:] if comma < 0 else raw[i:comma]).strip())
        if comma < 0:
            return values
        i = comma + 1


def parse_filter(name: str, raw: Any) -> list[str | None]:
    """One filter: a comma-separated string or a list, each value checked against the allowlist."""
    if name not in DIMENSIONS:
        raise FilterError(f"unknown filter {name!r}; allowed: {', '.join(DIMENSIONS)}", name)
    if isinstance(raw, str):
        values = split_values(raw, name)
    elif isinstance(raw, list) and all(isinstance(v, str) or v is None for v in raw):
        values = [v.strip() if isinstance(v, str) else v for v in raw]
    else:
        raise FilterError(f"filter {name!r} must be a comma-separated string or a list of strings", name)
    if not values or any(v == "" for v in values):
        raise FilterError(f"filter {name!r} has an empty value", name)
    if len(values) > MAX_FILTER_VALUES:
        raise FilterError(f"filter {name!r} has more than {MAX_FILTER_VALUES} values", name)
    allowed = DIMENSION_VALUES.get(name)
    out: list[str | None] = []
    for value in values:
        if value is None or (name == "assigned_to" and value == UNASSIGNED and not isinstance(value, Quoted)):
            if name != "assigned_to":
                raise FilterError(f"filter {name!r} cannot be null", name)
            out.append(None)
            continue
        if len(value) > MAX_VALUE_LENGTH:
            raise FilterError(f"a value of filter {name!r} is longer than {MAX_VALUE_LENGTH}", name)
        if allowed is not None and value not in allowed:
            raise FilterError(f"unknown {name} {value!r}; allowed: {', '.join(allowed)}", name)
        out.append(str(value))
    # Sorted (unassigned last), so every spelling of one filter is one cache key.
    return sorted(set(out), key=lambda v: (v is None, v or ""))


def parse_filters(source: Mapping[str, Any]) -> Filters:
    """The dimension filters present in `source`, a mapping that may hold other parameters too."""
    return {name: parse_filter(name, source[name]) for name in DIMENSIONS if source.get(name) is not None}


def parse_filter_object(source: Mapping[str, Any]) -> Filters:
    """A JSON object of filters (dimension -> values), every key a dimension."""
    unknown = [name for name in source if name not in DIMENSIONS]
    if unknown:
        raise FilterError(f"unknown filter {unknown[0]!r}; allowed: {', '.join(DIMENSIONS)}", "filters")
    for name, raw in source.items():
        # A bare null would read as "no filter" here and as "unassigned" to some: it is neither.
        if raw is None:
            raise FilterError(
                f"filters.{name} must be a list of values or a comma-separated string, not null "
                '(leave it out for no filter; unassigned is ["null"] or [null])',
                f"filters.{name}",
            )
    return parse_filters(source)
