"""JSON as the platform accepts it from clients: standard JSON, finite numbers, bounded nesting.

Python's json module takes NaN and Infinity, turns 1e400 into infinity, and recurses once per
nesting level (a deep enough document raises RecursionError, not a ValueError). None of those can be
stored (PostgreSQL's jsonb refuses non-finite numbers) or answered as anything but a client error.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64


class JsonError(ValueError):
    """The text is not JSON the platform accepts; `line` is where, when known."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError(f"the number {text[:40]} is too large")
    return value


def loads(text: str | bytes) -> Any:
    """The decoded document, or JsonError saying what is wrong with it."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        message = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise JsonError(message, line=exc.lineno) from exc
    except RecursionError as exc:
        raise JsonError(f"the document nests deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:  # an integer of thousands of digits, say
        raise JsonError(str(exc)) from exc
    if _deeper_than(value, MAX_DEPTH):
        raise JsonError(f"the document nests deeper than {MAX_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
