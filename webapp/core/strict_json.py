"""JSON as the platform accepts it from clients: standard JSON, finite numbers, keys unique in each
object, bounded nesting, element count and string length.

Python's json module takes NaN and Infinity, turns 1e400 into infinity, and recurses once per
nesting level (a deep enough document raises RecursionError, not a ValueError). None of those can be
stored (PostgreSQL's jsonb refuses non-finite numbers) or answered as anything but a client error.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from typing import Any

MAX_DEPTH = 64
# Arrays' items and objects' values in one document: a body of `[{},{},...]` past it is refused before
# pydantic sees any of it. Imports are bounded by their size and row count instead (import_formats).
MAX_ELEMENTS = 200_000
# Characters in one string (keys too): no field the platform stores is longer.
MAX_STRING_CHARS = 65_536


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


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: a repeated key would be read differently by another
    parser (the first or the last value), so it is refused rather than silently resolved."""
    value = dict(pairs)
    if len(value) != len(pairs):
        repeated = next(key for key, count in Counter(key for key, _ in pairs).items() if count > 1)
        raise JsonError(f"the key {repeated[:100]!r} appears more than once in one object")
    return value


class TooManyItems(JsonError):
    """The document is an array of more than the items asked for (loads' `max_items`)."""


def loads(
    text: str | bytes,
    *,
    max_elements: int = MAX_ELEMENTS,
    max_string: int = MAX_STRING_CHARS,
    max_items: int | None = None,
) -> Any:
    """The decoded document, or JsonError saying what is wrong with it (nesting past MAX_DEPTH, more
    than `max_elements` values, a string longer than `max_string` characters); TooManyItems for an
    array of more than `max_items` items, found before any value is walked."""
    if isinstance(text, bytes | bytearray):
        text = _utf8(text)
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique_keys
        )
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        message = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise JsonError(message, line=exc.lineno) from exc
    except RecursionError as exc:
        raise JsonError(f"the document nests deeper than {MAX_DEPTH} levels") from exc
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # Python's own words name its settings
            limit = sys.get_int_max_str_digits()
            raise JsonError(f"a number has more digits than the platform reads ({limit})") from exc
        raise JsonError(str(exc)) from exc
    if max_items is not None and isinstance(value, list) and len(value) > max_items:
        raise TooManyItems(f"the array holds more than {max_items} items")
    _check_shape(value, max_elements=max_elements, max_string=max_string)
    return value


def _check_shape(value: Any, *, max_elements: int, max_string: int) -> None:
    """Refuse nesting past MAX_DEPTH, more than `max_elements` values, or a string (a key too) longer
    than `max_string` characters (walked without recursion)."""
    stack = [(value, 1)]
    elements = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if len(item) > max_string:
                raise JsonError(f"a string is longer than {max_string} characters")
            continue
        if isinstance(item, dict):
            children: Any = item.values()
            for key in item:
                if len(key) > max_string:
                    raise JsonError(f"a key is longer than {max_string} characters")
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > MAX_DEPTH:
            raise JsonError(f"the document nests deeper than {MAX_DEPTH} levels")
        elements += len(children)
        if elements > max_elements:
            raise JsonError(f"the document holds more than {max_elements} values")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | str))


def _utf8(data: bytes | bytearray) -> str:
    """`data` as UTF-8 text, the only encoding JSON may be exchanged in (RFC 8259, section 8.1); a
    leading byte order mark is ignored, as that section allows. json.loads would also guess UTF-16
    and UTF-32 from zero bytes, so such a body was read where invalid UTF-8 was refused."""
    if b"\x00" in data[:4]:
        raise JsonError("the body is not UTF-8 text (it looks like UTF-16 or UTF-32; send UTF-8)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonError(f"the body is not UTF-8 text (byte {exc.start} is not)") from exc
