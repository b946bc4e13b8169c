"""The JSON schema of a PATCH body as the server reads it: at least one field, null only where a
field may be cleared (pydantic writes `T | None = None` as "T or null", which a PATCH refuses)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

JsonSchema = dict[str, Any]
NULL = {"type": "null"}


def patch_body(nullable: Iterable[str] = ()) -> Callable[[JsonSchema], None]:
    """A `json_schema_extra` for a PATCH body model whose fields refuse null but those in `nullable`."""
    kept = frozenset(nullable)

    def adjust(schema: JsonSchema) -> None:
        for name, prop in schema.get("properties", {}).items():
            branches = prop.get("anyOf")
            if name in kept or not branches or NULL not in branches:
                continue
            rest = [branch for branch in branches if branch != NULL]
            del prop["anyOf"]
            if len(rest) == 1:
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest
            if prop.get("default", ...) is None:
                del prop["default"]
        schema["minProperties"] = 1

    return adjust
