"""Run the benchmarks, print a table and merge the results into ``benchmarks/results/latest.json``.

    python -m benchmarks.run [--quick] [--only NAME ...] [--repeats N]

Each figure is the median of ``--repeats`` runs (3 by default, 1 with ``--quick``) unless its row says
otherwise. Ratios compare with a baseline measured in the same process, so they hold across machines
better than the absolute numbers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import Benchmark, Row
from kotone_pipeline.domain.data.jsonl import write_json

# Add a benchmark module here: it exposes BENCHMARKS, or run(repeats) [+ rows(results, repeats)].
MODULES: tuple[str, ...] = (
    "benchmarks.bench_domain",
    "benchmarks.bench_human",
    "benchmarks.bench_people_gain",
    "benchmarks.bench_hf",
    "benchmarks.bench_cycle",
    "benchmarks.bench_report",
    "benchmarks.bench_serve",
    "benchmarks.bench_review",
    "benchmarks.bench_flywheel",
    "benchmarks.bench_lora",
    "benchmarks.bench_ui",
    "benchmarks.bench_deploy",
    "benchmarks.bench_state",
)

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
DEFAULT_REPEATS, QUICK_REPEATS = 3, 1


def _unit(key: str) -> str:
    for suffix, unit in (("_per_s", "/s"), ("_ms", "ms"), ("_s", "s")):
        if key.endswith(suffix):
            return unit
    return ""


def _plain_rows(results: dict[str, float], repeats: int) -> list[Row]:
    return [Row(key, value, _unit(key), repeats) for key, value in results.items()]


def module_benchmarks(module: ModuleType) -> list[Benchmark]:
    """``BENCHMARKS`` when the module lists them; else one benchmark from its ``run`` (and ``rows`` if any),
    named after the module without its ``bench_`` prefix."""
    listed = getattr(module, "BENCHMARKS", None)
    if listed is not None:
        return list(listed)
    run = getattr(module, "run", None)
    if run is None:
        raise ValueError(f"{module.__name__}: a benchmark module needs BENCHMARKS or run(repeats)")
    name = module.__name__.rsplit(".", 1)[-1].removeprefix("bench_")
    return [Benchmark(name, run, getattr(module, "rows", _plain_rows))]


def collect(modules: Sequence[str] = MODULES) -> list[Benchmark]:
    found: list[Benchmark] = []
    for name in modules:
        found.extend(module_benchmarks(importlib.import_module(name)))
    names = [b.name for b in found]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"benchmark names must be unique; repeated: {', '.join(duplicated)}")
    return found


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def table(rows_by_benchmark: dict[str, list[Row]]) -> Table:
    out = Table(title="kotone benchmarks (median of the runs shown)")
    for column, justify in (("benchmark", "left"), ("what", "left"), ("value", "right"), ("unit", "left"),
                            ("vs baseline", "right"), ("baseline", "left"), ("runs", "right")):  # fmt: skip
        out.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, rows in rows_by_benchmark.items():
        for i, row in enumerate(rows):
            ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
            out.add_row(name if i == 0 else "", row.label, _fmt(row.value), row.unit, ratio, row.versus, str(row.runs))
    return out


def merge_results(path: Path, results: dict[str, float], meta: dict[str, Any]) -> dict[str, Any]:
    """Keep earlier keys (an ``--only`` run updates its own), overwrite the ones measured now."""
    merged: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
            merged = loaded if isinstance(loaded, dict) else {}
        except (json.JSONDecodeError, OSError):
            merged = {}  # a damaged results file is replaced, not fatal
    merged.update(results)
    runs = merged.get("_runs") if isinstance(merged.get("_runs"), dict) else {}
    runs.update(meta)
    merged["_runs"] = runs
    write_json(path, merged)
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description="Run the kotone benchmarks.")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REPEATS} run per figure")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per figure (overrides --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON to merge into")
    args = parser.parse_args(argv)

    benchmarks = collect()
    known = [b.name for b in benchmarks]
    if args.only:
        unknown = sorted(set(args.only) - set(known))
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(known)}")
        benchmarks = [b for b in benchmarks if b.name in args.only]
    repeats = args.repeats if args.repeats is not None else QUICK_REPEATS if args.quick else DEFAULT_REPEATS
    if repeats < 1:
        parser.error("--repeats must be >= 1")

    console = Console(width=max(Console().width, 120))  # the table needs ~110 columns; pipes get 80
    results: dict[str, float] = {}
    rows: dict[str, list[Row]] = {}
    meta: dict[str, Any] = {}
    for bench in benchmarks:
        console.print(f"running {bench.name} ({repeats} run(s) per figure) ...")
        started = time.perf_counter()
        measured = bench.run(repeats)
        results.update(measured)
        rows[bench.name] = bench.rows(measured, repeats)
        meta[bench.name] = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "repeats": repeats,
            "wall_s": round(time.perf_counter() - started, 2),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
    console.print(table(rows))
    merge_results(args.out, results, meta)
    console.print(f"results merged into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
