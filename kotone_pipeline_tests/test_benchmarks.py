"""The benchmark runner: registry, --only, --quick, and merging into latest.json (no real benchmark run)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from benchmarks import Benchmark, Row, run


def _fake(name: str, value: float, calls: list[int]) -> Benchmark:
    def measure(repeats: int) -> dict[str, float]:
        calls.append(repeats)
        return {f"{name}_s": value}

    return Benchmark(name, measure, lambda r, repeats: [Row(f"{name} time", r[f"{name}_s"], "s", repeats, 0.5, "x")])


def test_registry_lists_the_domain_and_hf_benchmarks() -> None:
    assert [b.name for b in run.collect()] == [
        "data",
        "model",
        "human",
        "people_gain",
        "hf",
        "cycle",
        "report",
        "serve",
        "request_log",
        "review_page",
        "flywheel",
        "lora_cpu_tiny_phase_s",
        "predict_batched_speedup",
        "local_job",
        "dev",
        "ui_runs",
        "demo",
        "deploy",
        "state",
    ]


def test_a_module_with_only_run_becomes_one_benchmark() -> None:
    module = types.ModuleType("benchmarks.bench_disk")
    module.run = lambda repeats: {"write_s": 0.5, "files": 3.0}  # type: ignore[attr-defined]
    (bench,) = run.module_benchmarks(module)
    assert bench.name == "disk"
    rows = bench.rows(bench.run(2), 2)
    assert [(r.label, r.value, r.unit, r.runs) for r in rows] == [("write_s", 0.5, "s", 2), ("files", 3.0, "", 2)]
    with pytest.raises(ValueError, match="needs BENCHMARKS or run"):
        run.module_benchmarks(types.ModuleType("benchmarks.bench_empty"))


def test_only_runs_the_named_benchmark_and_merges_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls_a: list[int] = []
    calls_b: list[int] = []
    monkeypatch.setattr(run, "collect", lambda: [_fake("a", 1.5, calls_a), _fake("b", 2.0, calls_b)])
    out = tmp_path / "latest.json"
    out.write_text(json.dumps({"old_key": 7.0, "a_s": 99.0}))

    assert run.main(["--only", "a", "--quick", "--out", str(out)]) == 0
    assert calls_a == [run.QUICK_REPEATS] and calls_b == []
    merged = json.loads(out.read_text())
    assert merged["old_key"] == 7.0 and merged["a_s"] == 1.5 and "b_s" not in merged
    assert merged["_runs"]["a"]["repeats"] == run.QUICK_REPEATS
    printed = capsys.readouterr().out
    assert "a time" in printed and "0.50x" in printed

    assert run.main(["--repeats", "2", "--out", str(out)]) == 0
    assert calls_a[-1] == 2 and calls_b == [2]
    assert json.loads(out.read_text())["b_s"] == 2.0


def test_unknown_benchmark_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(run, "collect", lambda: [_fake("a", 1.0, [])])
    with pytest.raises(SystemExit) as info:
        run.main(["--only", "nope", "--out", str(tmp_path / "r.json")])
    assert info.value.code == 2


def test_damaged_results_file_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    out.write_text("{not json")
    merged = run.merge_results(out, {"k": 1.0}, {"x": {"repeats": 1}})
    assert json.loads(out.read_text()) == merged == {"k": 1.0, "_runs": {"x": {"repeats": 1}}}
