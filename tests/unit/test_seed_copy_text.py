"""The seeder's numpy COPY text: numbers written as Python writes them."""

from __future__ import annotations

import numpy as np

from webapp.tickets.seeding import copy_text as text


def _rows(piece: text.Piece) -> list[str]:
    matrix, lengths = piece
    width = matrix.shape[1]
    return [bytes(matrix[i, : width if lengths is None else lengths[i]]).decode() for i in range(len(matrix))]


def test_ints_are_decimal_without_padding():
    edges = [0, 1, 9, 10, 99, 100, 101, 999_999, 1_000_000, 2**53, 10**18 - 1]
    drawn = np.random.default_rng(3).integers(0, 10**15, 5000)
    for values in (np.array(edges), drawn, np.array([7])):
        assert _rows(text.ints(values)) == [str(int(v)) for v in values]
    assert _rows(text.ints(np.array([], dtype=np.int64))) == []


def test_hundredths_and_a_whole_row():
    values = np.array([0, 5, 100, 1234, 99_999])
    rows = text.encode([[text.ints(values)], text.hundredths(values)]).decode().splitlines()
    assert rows == [f"{v}\t{v // 100}.{v % 100:02d}" for v in values]
