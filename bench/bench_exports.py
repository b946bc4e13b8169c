"""Export throughput and worker memory: each format beside bare COPY, for 100,000 and 1,000,000 tickets.

Every run happens in a fresh child process, so its peak RSS is that run's alone, and opens one fresh
connection on the clock (SQLAlchemy's once-per-process dialect set-up is done before it). The export runs go
through exports.write_export, the job's whole path: REPEATABLE READ, formula guard, streaming with
rows counted and sha256 taken on the way (XLSX: a count first, then a re-read for sha256), fsync,
rename. Two references run beside them: bare COPY of the same rows to a file (the ceiling; its
output must be byte for byte the CSV export's, which the run checks), and csv.writer over rows
fetched through a server-side cursor (what COPY replaces); `xlsxwriter` is the bare writer
library (XlsxWriter in constant-memory mode, write_row over the same rows from a server-side cursor,
none of our job path: no count, progress, formula guard, metadata sheet, fsync, hash or rename), the
reference for XLSX; `xlsx-openpyxl` is the XLSX writer not chosen, fed the same rows, for comparison.
The targets are read off at the end: CSV >= 0.7x COPY's rows/s, XLSX >= 0.8x the bare writer's, and
each format's peak RSS at the largest size within 1.2x of that at the smallest.

On a shared machine one run is one moment's load: `--repeat N` runs every variant N times at each
size, interleaved (copy, csv, ..., copy, csv, ...), and the table keeps each variant's median run.

    python -m bench.bench_exports [--sizes 100000,1000000] [--variants copy,csv,...] [--repeat N]
                                  [--database-url URL]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.common import insert_org, print_table, scratch_postgres, write_results

VARIANTS = ("copy", "csv.writer", "csv", "json", "ndjson", "xlsxwriter", "xlsx", "xlsx-openpyxl")
FORMATS = ("csv", "json", "ndjson", "xlsx")
TARGETS = {"csv / copy rows/s": 0.7, "xlsx / xlsxwriter rows/s": 0.8, "peak RSS largest / smallest": 1.2}
SIZES = (100_000, 1_000_000)
TZ = "Europe/Berlin"
QUERY = {"start": "2000-01-01", "end": "2100-01-01", "tz": TZ}


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def seed(url: str, sizes: list[int]) -> dict[int, int]:
    """One organization per size, holding exactly that many tickets (and their events)."""
    from webapp.tickets import seeding

    orgs = {}
    with psycopg.connect(_dsn(url)) as conn:
        for size in sizes:
            org_id = insert_org(conn, TZ, f"Bench {size}")
            conn.commit()
            started = time.perf_counter()
            seeding.seed_tickets(conn, org_id=org_id, tickets=size, days=365, seed=size, tz=TZ)
            conn.commit()
            print(f"seeded {size:,} tickets in {time.perf_counter() - started:.1f}s", flush=True)
            orgs[size] = org_id
        conn.execute("ANALYZE tickets")
        conn.commit()
    return orgs


# --- one run, in a child process ---------------------------------------------------------------


def _bare_copy(url: str, org_id: int, path: Path) -> int:
    from webapp.exports.spec import TICKET_COLUMNS

    columns = ", ".join(TICKET_COLUMNS)
    rows = -1
    with psycopg.connect(_dsn(url)) as conn, conn.cursor() as cur, path.open("wb") as out:
        cur.execute("SELECT set_config('TimeZone', %s, true)", (TZ,))
        statement = (
            f"COPY (SELECT {columns} FROM tickets WHERE org_id = %s ORDER BY created_at, id)"
            " TO STDOUT WITH (FORMAT csv, HEADER true)"
        )
        with cur.copy(statement, (org_id,)) as copy:
            for chunk in copy:
                out.write(chunk)
                rows += 1
    return rows


def _csv_writer(url: str, org_id: int, path: Path) -> int:
    from webapp.exports.spec import TICKET_COLUMNS

    rows = 0
    with psycopg.connect(_dsn(url)) as conn, path.open("w", newline="") as out:
        conn.execute("SELECT set_config('TimeZone', %s, true)", (TZ,))
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(TICKET_COLUMNS)
        with conn.cursor(name="bench") as cur:
            cur.execute(
                f"SELECT {', '.join(TICKET_COLUMNS)} FROM tickets WHERE org_id = %s ORDER BY created_at, id",
                (org_id,),
            )
            while batch := cur.fetchmany(2000):
                writer.writerows(batch)
                rows += len(batch)
    return rows


def _xlsxwriter(url: str, org_id: int, path: Path) -> int:
    """The bare writer library: XlsxWriter in constant-memory mode, write_row over a server-side cursor."""
    import xlsxwriter

    from webapp.exports.spec import TICKET_COLUMNS

    rows = 0
    workbook = xlsxwriter.Workbook(
        str(path),
        {"constant_memory": True, "remove_timezone": True, "default_date_format": "yyyy-mm-dd hh:mm:ss"},
    )
    sheet = workbook.add_worksheet("data")
    sheet.write_row(0, 0, list(TICKET_COLUMNS))
    with psycopg.connect(_dsn(url)) as conn:
        # Timestamps come back in the export's zone; remove_timezone keeps their wall-clock time.
        conn.execute("SELECT set_config('TimeZone', %s, true)", (TZ,))
        with conn.cursor(name="bench") as cur:
            cur.execute(
                f"SELECT {', '.join(TICKET_COLUMNS)} FROM tickets WHERE org_id = %s ORDER BY created_at, id",
                (org_id,),
            )
            while batch := cur.fetchmany(2000):
                for row in batch:
                    rows += 1
                    sheet.write_row(rows, 0, row)
    workbook.close()
    return rows


def _openpyxl(session: Any, org_id: int, path: Path) -> int:
    """The same typed cells through openpyxl's write-only mode (the XLSX writer not chosen)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    from webapp.api.schemas.exports import ExportRequest
    from webapp.exports.formulas import FORMULA_PREFIXES
    from webapp.exports.tables import open_table

    request = {"format": "xlsx", "dataset": "tickets", "query": QUERY}
    spec = ExportRequest.model_validate(request).root.spec(default_tz=TZ, now=datetime.now(UTC))
    table = open_table(session, org_id=org_id, query=spec.query)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("data")
    sheet.freeze_panes = "A2"
    sheet.append([c.name for c in table.columns])
    kinds = [c.kind for c in table.columns]
    rows = 0
    for row in table.rows():
        cells: list[Any] = []
        for value, kind in zip(row, kinds, strict=True):
            if kind == "timestamp" and value is not None:
                value = value.astimezone(table.tz).replace(tzinfo=None)
            elif kind == "text" and value and value[0] in FORMULA_PREFIXES:
                cell = WriteOnlyCell(sheet, value=value)
                cell.data_type = "s"
                cell.quotePrefix = True
                value = cell
            cells.append(value)
        sheet.append(cells)
        rows += 1
    book.save(path)
    return rows


def _peak_rss() -> int:
    """This process's peak resident memory in bytes.

    VmHWM belongs to the address space exec() created; ru_maxrss would also count the parent's
    peak before the fork (Linux carries it over).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_one(variant: str, org_id: int, url: str, directory: Path) -> dict[str, Any]:
    """One export run, measured: rows, seconds, bytes, peak RSS and its growth over the idle process."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from webapp.api.schemas.exports import ExportRequest
    from webapp.exports.files import write_export

    engine = create_engine(url)
    baseline = psutil.Process().memory_info().rss
    # SQLAlchemy initializes its dialect on an engine's first connection (a few queries, ~4 ms): a
    # worker pays that once, not per export. It is paid here, off the clock; the pool is then emptied,
    # so the timed run still opens a fresh connection, as bare COPY does.
    with engine.connect():
        pass
    engine.dispose()
    started = time.perf_counter()
    path = directory / f"{variant}-{org_id}.out"
    with Session(engine) as session:
        if variant == "copy":
            rows = _bare_copy(url, org_id, path)
        elif variant == "csv.writer":
            rows = _csv_writer(url, org_id, path)
        elif variant == "xlsxwriter":
            rows = _xlsxwriter(url, org_id, path)
        elif variant == "xlsx-openpyxl":
            rows = _openpyxl(session, org_id, path)
        else:
            now = datetime.now(UTC)
            request = {"format": variant, "dataset": "tickets", "query": QUERY}
            spec = ExportRequest.model_validate(request).root.spec(default_tz=TZ, now=now)
            written = write_export(
                session, org_id=org_id, job_id=uuid.uuid4(), spec=spec, directory=directory, now=now
            )
            rows, path = written.rows, written.path
    seconds = time.perf_counter() - started
    peak = _peak_rss()
    size = path.stat().st_size
    digest = _sha256(path)  # after the clock and the peak: what was written, to compare variants
    path.unlink()
    return {
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        "bytes": size,
        "sha256": digest,
        "peak_rss_mb": round(peak / 2**20, 1),
        "rss_growth_mb": round((peak - baseline) / 2**20, 1),
    }


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()


def same_output(results: dict[str, dict[str, Any]], sizes: list[int]) -> dict[str, bool]:
    """Per size, whether the CSV export wrote exactly the bytes bare COPY did (like is compared with like).

    They differ only if a seeded text started with a formula prefix, which the seed never writes.
    """
    out: dict[str, bool] = {}
    for size in sizes:
        copy, export = results.get(f"copy {size}"), results.get(f"csv {size}")
        if copy is not None and export is not None:
            out[f"{size}"] = copy["sha256"] == export["sha256"] and copy["rows"] == export["rows"]
    return out


def _run_child(url: str, variant: str, org_id: int, directory: str) -> dict[str, Any]:
    """One run in a fresh process (see run_one)."""
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.bench_exports",
            "--database-url",
            url,
            "--child",
            variant,
            str(org_id),
            directory,
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median time (the faster of the middle two), every run's seconds, the top peak RSS."""
    chosen = sorted(runs, key=lambda run: run["seconds"])[(len(runs) - 1) // 2]
    return {
        **chosen,
        "runs_seconds": [run["seconds"] for run in runs],
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "rss_growth_mb": max(run["rss_growth_mb"] for run in runs),
    }


def read_targets(results: dict[str, dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    """The issue's export targets, from whichever runs were made."""
    out: list[dict[str, Any]] = []

    def ratio(target: str, at: str, numerator: str, denominator: str, key: str, lower: bool) -> None:
        if numerator in results and denominator in results:
            value = results[numerator][key] / results[denominator][key]
            bound = TARGETS[target]
            passed = value <= bound if lower else value >= bound
            out.append({"target": target, "at": at, "measured": value, "bound": bound, "passed": passed})

    for size in sizes:
        ratio("csv / copy rows/s", f"{size:,}", f"csv {size}", f"copy {size}", "rows_per_s", lower=False)
        ratio(
            "xlsx / xlsxwriter rows/s",
            f"{size:,}",
            f"xlsx {size}",
            f"xlsxwriter {size}",
            "rows_per_s",
            lower=False,
        )
    if len(sizes) >= 2:
        small, large = min(sizes), max(sizes)
        for fmt in FORMATS:
            ratio(
                "peak RSS largest / smallest",
                f"{fmt} {large:,} / {small:,}",
                f"{fmt} {large}",
                f"{fmt} {small}",
                "peak_rss_mb",
                lower=True,
            )
    return out


# --- the driver --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each variant at each size (median kept)"
    )
    parser.add_argument("--database-url", help="a migrated database to use instead of the scratch cluster")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "ORG", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        variant, org, directory = args.child
        print(json.dumps(run_one(variant, int(org), args.database_url, Path(directory))))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    pg = None
    url = args.database_url
    if url is None:
        pg, url = scratch_postgres("bench_exports")
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        orgs = seed(url, sizes)
        with tempfile.TemporaryDirectory(prefix="bench-exports-") as directory:
            for size in sizes:
                # Interleaved, so that every variant meets the same spells of load from other work.
                for _ in range(args.repeat):
                    for variant in variants:
                        result = _run_child(url, variant, orgs[size], directory)
                        runs.setdefault(f"{variant} {size}", []).append(result)
                        print(
                            f"{variant:>14} {size:>9,}: {result['rows_per_s']:>9,} rows/s, "
                            f"peak RSS {result['peak_rss_mb']} MB",
                            flush=True,
                        )
    finally:
        if pg is not None:
            pg.stop()
    results = {
        key: {"variant": key.split()[0], "size": int(key.split()[1]), **median_run(each)}
        for key, each in runs.items()
    }

    headers = ["variant", "rows", "runs", "seconds", "rows/s", "MB written", "peak RSS MB", "RSS growth MB"]
    table = [
        [
            r["variant"],
            r["rows"],
            len(r["runs_seconds"]),
            r["seconds"],
            r["rows_per_s"],
            round(r["bytes"] / 2**20, 1),
            r["peak_rss_mb"],
            r["rss_growth_mb"],
        ]
        for r in results.values()
    ]
    title = "Exports of the tickets dataset (13 columns), one child process per run, the median run shown"
    print_table(title, headers, table)
    identical = same_output(results, sizes)
    for size, same in identical.items():
        print(
            f"\ncsv export byte for byte bare COPY's output at {int(size):,} rows: {'yes' if same else 'NO'}"
        )
    targets = read_targets(results, sizes)
    print_table(
        "Targets",
        ["target", "at", "measured", "bound", "verdict"],
        [
            [t["target"], t["at"], t["measured"], t["bound"], "pass" if t["passed"] else "MISS"]
            for t in targets
        ],
    )
    path = write_results(
        "exports",
        {"sizes": sizes, "tz": TZ, "results": results, "targets": targets, "csv_same_as_copy": identical},
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
