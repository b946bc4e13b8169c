"""Whole-number path segments (`<int:...>`) written in ASCII digits only.

Werkzeug's integer converter matches `\\d+`, which in a str pattern is any script's decimal digits,
and `int()` reads them all: `/alerts/%EF%BC%92` (a full-width two) or `/alerts/%D9%A2` (an
Arabic-Indic two) would name alert 2, a DELETE included. An id is written 0-9; any other spelling
is no path the API serves (404).
"""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter


class AsciiIntegerConverter(IntegerConverter):
    regex = r"[0-9]+"


def init_app(app: Flask) -> None:
    """Before any route is added: every `<int:...>` of the app then reads ASCII digits only."""
    app.url_map.converters["int"] = AsciiIntegerConverter
