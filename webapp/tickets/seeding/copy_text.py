"""PostgreSQL COPY text built with numpy: every column of a batch formatted at once, no per-row Python."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from webapp.core.vocabulary import CHANNELS, EVENT_TYPES, PRIORITIES, STATUSES
from webapp.tickets.seeding.population import AGENTS, CATEGORIES, SUBJECTS

# COPY text encoding. A piece is a byte matrix (one row per COPY row) and each row's length
# (None: the full width); a field is a list of pieces written back to back.
Piece = tuple[np.ndarray, np.ndarray | None]

_TWO_DIGITS = np.array([list(f"{i:02d}".encode()) for i in range(100)], dtype=np.uint8)


def encode(fields: list[list[Piece]]) -> bytes:
    """Rows of tab-separated fields, each ended by a newline, as one buffer."""
    n = fields[0][0][0].shape[0]
    matrices: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for i, field in enumerate(fields):
        separator = b"\n" if i == len(fields) - 1 else b"\t"
        for matrix, lengths in [*field, const(separator.decode(), n)]:
            matrices.append(matrix)
            width = matrix.shape[1]
            if lengths is None:
                masks.append(np.ones((n, width), dtype=bool))
            else:
                masks.append(np.arange(width) < lengths[:, None])
    return np.concatenate(matrices, axis=1)[np.concatenate(masks, axis=1)].tobytes()


def const(text: str, n: int) -> Piece:
    """The same text on each of `n` rows."""
    raw = np.frombuffer(text.encode(), dtype=np.uint8)
    return np.broadcast_to(raw, (n, len(raw))), None


_POWERS = 10 ** np.arange(19, dtype=np.int64)


def ints(values: np.ndarray) -> Piece:
    """Non-negative integers in decimal (digit arithmetic: several times cheaper than a cast to bytes)."""
    values = np.asarray(values, dtype=np.int64)
    width = len(str(int(values.max()))) if len(values) else 1
    lengths = np.ones(len(values), dtype=np.int64)
    for k in range(1, width):
        lengths += values >= _POWERS[k]
    # Digit j of a number of n digits is its (n - 1 - j)-th power of ten; places past n are masked.
    places = np.maximum(lengths[:, None] - 1 - np.arange(width), 0)
    digits = (values[:, None] // _POWERS[places] % 10 + ord("0")).astype(np.uint8)
    return digits, lengths


def hundredths(values: np.ndarray) -> list[Piece]:
    """Non-negative integers divided by 100, written exactly: 1234 -> 12.34."""
    return [ints(values // 100), const(".", len(values)), (_TWO_DIGITS[values % 100], None)]


def sentiment(milli: np.ndarray) -> Piece:
    """Integers in [-1000, 1000] divided by 1000, with a sign: -250 -> -0.250."""
    out = np.empty((len(milli), 6), dtype=np.uint8)
    magnitude = np.abs(milli)
    out[:, 0] = np.where(milli < 0, ord("-"), ord("+"))
    out[:, 1] = ord("0") + magnitude // 1000
    out[:, 2] = ord(".")
    out[:, 3] = ord("0") + magnitude % 1000 // 100
    out[:, 4:6] = _TWO_DIGITS[magnitude % 100]
    return out, None


def timestamps(epoch: np.ndarray) -> Piece:
    """Epoch seconds as 'YYYY-MM-DD HH:MM:SS+00'."""
    out = np.empty((len(epoch), 22), dtype=np.uint8)
    if not len(epoch):
        return out, None
    day = epoch // 86400
    second = epoch - day * 86400
    # Few distinct days per batch: format each once and gather.
    first = int(day.min())
    calendar = np.arange(first, int(day.max()) + 1).astype("datetime64[D]")
    dates = np.datetime_as_string(calendar).astype("S10").view(np.uint8).reshape(-1, 10)
    out[:, 0:10] = dates[day - first]
    out[:, 10] = ord(" ")
    out[:, 11:13] = _TWO_DIGITS[second // 3600]
    out[:, 13] = ord(":")
    out[:, 14:16] = _TWO_DIGITS[second // 60 % 60]
    out[:, 16] = ord(":")
    out[:, 17:19] = _TWO_DIGITS[second % 60]
    out[:, 19:22] = np.frombuffer(b"+00", dtype=np.uint8)
    return out, None


def nullable(field: list[Piece], null: np.ndarray) -> list[Piece]:
    """`field`, or \\N where `null`."""
    marker, _ = const("\\N", len(null))
    pieces: list[Piece] = [(marker, np.where(null, 2, 0))]
    for matrix, lengths in field:
        full_length = np.full(len(null), matrix.shape[1]) if lengths is None else lengths
        pieces.append((matrix, np.where(null, 0, full_length)))
    return pieces


class Vocabulary:
    """A text column whose values come from a short list, looked up by code; None is NULL."""

    def __init__(self, values: Sequence[str | None]) -> None:
        # COPY text would need these escaped; the vocabularies never contain them.
        assert not any(c in v for v in values if v is not None for c in "\t\n\\"), "unescaped COPY text"
        encoded = [b"\\N" if v is None else v.encode() for v in values]
        width = max(len(v) for v in encoded)
        self.matrix = np.zeros((len(encoded), width), dtype=np.uint8)
        for i, v in enumerate(encoded):
            self.matrix[i, : len(v)] = np.frombuffer(v, dtype=np.uint8)
        self.lengths = np.array([len(v) for v in encoded])

    def column(self, codes: np.ndarray) -> Piece:
        """The values of `codes` (indexes into the list), one a row."""
        return self.matrix[codes], self.lengths[codes]


def _pairs(values: Sequence[str | None]) -> list[str]:
    return [json.dumps({"from": a, "to": b}) for a in values for b in values]


STATUS = Vocabulary(STATUSES)
PRIORITY = Vocabulary(PRIORITIES)
CHANNEL = Vocabulary(CHANNELS)
CATEGORY = Vocabulary(CATEGORIES)
AGENT = Vocabulary((None, *AGENTS))
EVENT_TYPE = Vocabulary(EVENT_TYPES)
SUBJECT = Vocabulary([s for category in CATEGORIES for s in SUBJECTS[category]])
SUBJECT_COUNT = np.array([len(SUBJECTS[c]) for c in CATEGORIES])
SUBJECT_FIRST = np.concatenate([[0], np.cumsum(SUBJECT_COUNT)[:-1]])
# Detail is NULL (code 0) or {"from": .., "to": ..} of statuses, priorities or assignees.
_STATUS_PAIRS_AT = 1
_PRIORITY_PAIRS_AT = _STATUS_PAIRS_AT + len(STATUSES) ** 2
_AGENT_PAIRS_AT = _PRIORITY_PAIRS_AT + len(PRIORITIES) ** 2
DETAIL = Vocabulary([None, *_pairs(STATUSES), *_pairs(PRIORITIES), *_pairs((None, *AGENTS))])


def status_detail(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """DETAIL codes of status changes `before` -> `after` (status codes)."""
    return _STATUS_PAIRS_AT + before * len(STATUSES) + after


def priority_detail(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """DETAIL codes of priority changes `before` -> `after` (priority codes)."""
    return _PRIORITY_PAIRS_AT + before * len(PRIORITIES) + after


def agent_detail(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """DETAIL codes of assignments `before` -> `after` (agent codes, 0 unassigned)."""
    return _AGENT_PAIRS_AT + before * (len(AGENTS) + 1) + after
