"""Text a spreadsheet would run as a formula, kept as text: the guard every export format applies."""

from __future__ import annotations

# Excel, LibreOffice and Google Sheets read a cell starting with = + - @ as a formula; some strip a
# leading tab, CR or LF first. Such text gets a leading ' in CSV and the quote-prefix flag in XLSX.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
FORMULA_START = frozenset(FORMULA_PREFIXES)
# Every prefix is ASCII below this code: one comparison settles a value that starts with a letter.
_FORMULA_BOUND = max(ord(c) for c in FORMULA_PREFIXES) + 1


def neutralise(value: str) -> str:
    """`value` with a leading ' when a spreadsheet would read it as a formula."""
    return "'" + value if value and value[0] in FORMULA_START else value


def neutralised_sql(expr: str, name: str) -> str:
    """SQL selecting text `expr` as `name`, neutralised as `neutralise` does, for COPY to write."""
    # ascii() of the first character is cheaper than left() or a regular expression per row, and the
    # range test first spares most values the IN list: over 1M rows of six text columns it took the
    # CASEs' server time from about 0.2 s (a seventh of the COPY's) to a few hundredths.
    codes = ", ".join(str(ord(c)) for c in FORMULA_PREFIXES)
    first = f"ascii({expr})"
    return (
        f"CASE WHEN {first} < {_FORMULA_BOUND} AND {first} IN ({codes})"
        f" THEN '''' || {expr} ELSE {expr} END AS {name}"
    )
