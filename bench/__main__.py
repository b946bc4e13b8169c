"""`python -m bench [NAME ...] [-- ARGS]`: run every benchmark module, or the named ones.

Each module runs in its own process (it starts its own scratch services and parses its own
arguments); ARGS after `--` go to every module run. NAME is `rollups` or `bench_rollups`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Quick ones first; rollups last, since it seeds 10M tickets (about half an hour on 2 CPUs).
ORDER = (
    "bench_seed",
    "bench_cache_invalidation",
    "bench_http",
    "bench_wire",
    "bench_jobs",
    "bench_ingest",
    "bench_exports",
    "bench_dashboard",
    "bench_business",
    "bench_abuse",
    "bench_agents",
    "bench_rollups",
)


def available() -> list[str]:
    """Benchmark modules present, in the suite's order (then any others by name)."""
    present = {p.stem for p in HERE.glob("bench_*.py")}
    return [name for name in ORDER if name in present] + sorted(present - set(ORDER))


def main(argv: list[str]) -> int:
    names, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    modules = available()
    chosen = [n if n.startswith("bench_") else f"bench_{n}" for n in names] or modules
    unknown = [n for n in chosen if n not in modules]
    if unknown:
        print(f"unknown benchmark {unknown[0]!r}; available: {', '.join(modules)}", file=sys.stderr)
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{name}", *extra], cwd=HERE.parent).returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
