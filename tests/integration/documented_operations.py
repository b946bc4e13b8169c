"""The operations of the app's OpenAPI document, for tests that call each of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

BODY_METHODS = ("post", "put", "patch", "delete")


def operations(client: Any) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every operation the served document lists."""
    spec = client.get("/api/v1/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def example_path(path: str, operation: dict[str, Any]) -> str:
    """`path` with each parameter given a value its route matches (the first of an enum, else 1):
    enough to reach what runs before the view, which is all these tests call."""
    values = {
        param["name"]: str(param["schema"].get("enum", [1])[0])
        for param in operation["parameters"]
        if param["in"] == "path"
    }
    return re.sub(r"{(\w+)}", lambda m: values[m[1]], path)


def declares_query(operation: dict[str, Any]) -> bool:
    """Whether the operation documents any query parameter."""
    return any(param["in"] == "query" for param in operation["parameters"])
