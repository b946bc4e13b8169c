"""Where an analytics answer came from: the options a reading runs with (rollups allowed, sketches
above a size) and what its metric reads used (rollups, raw events, sketches), for `meta.source`
and `meta.approximate`. Both travel in context variables, so every read of one answer shares them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class ReadOptions:
    """How metric reads may be answered: from rollups at all, and percentiles from sketches when."""

    rollups: bool = True
    # Percentiles come from merged sketches (approximate) when the measurements exceed this; None: never.
    approximate_above: int | None = None


@dataclass
class Provenance:
    """What the metric reads of one answer were computed from."""

    rollup: bool = False
    raw: bool = False
    approximate: bool = False

    @property
    def source(self) -> str:
        """rollup, raw or mixed (an answer that read nothing counts as raw)."""
        if self.rollup:
            return "mixed" if self.raw else "rollup"
        return "raw"


DEFAULT_OPTIONS = ReadOptions()
_options: ContextVar[ReadOptions] = ContextVar("analytics_read_options", default=DEFAULT_OPTIONS)
_provenance: ContextVar[Provenance | None] = ContextVar("analytics_provenance", default=None)


@contextmanager
def reading(options: ReadOptions) -> Iterator[Provenance]:
    """Run the reads inside with `options`, recording where their answers came from."""
    provenance = Provenance()
    options_token = _options.set(options)
    provenance_token = _provenance.set(provenance)
    try:
        yield provenance
    finally:
        _options.reset(options_token)
        _provenance.reset(provenance_token)


def note(*, rollup: bool = False, raw: bool = False, approximate: bool = False) -> None:
    provenance = _provenance.get()
    if provenance is not None:
        provenance.rollup |= rollup
        provenance.raw |= raw
        provenance.approximate |= approximate


def note_raw() -> None:
    """Record that the current reading answered (in part) from raw rows."""
    note(raw=True)


def note_rollup() -> None:
    """Record that the current reading answered (in part) from rollups."""
    note(rollup=True)


def note_approximate() -> None:
    """Record that the current reading's percentiles came (in part) from sketches."""
    note(approximate=True)


def current_options() -> ReadOptions:
    """The options of the current reading (the defaults outside one)."""
    return _options.get()


def rollups_allowed() -> bool:
    """Whether the current reading may answer from rollups (not when exact answers were asked for)."""
    return _options.get().rollups
