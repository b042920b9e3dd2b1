"""scripts/bench/report.py: the ratios and flags with a baseline (``scripts/bench/run --baseline REV``), and
the one-round-trip (``incr``) table's derived figures: net of the job, lifecycle, tasks/s per Redis core."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "scripts" / "bench"


def _load_report() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))  # report.py imports report_rtt, as the driver's directory gives it
    path = BENCH / "report.py"
    spec = importlib.util.spec_from_file_location("bench_report", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


report = _load_report()
PARAMS = {"drain": {"n": 1, "cap": 1, "enqueue_cap": 1}, "latency": {"samples": 30, "cap": 1},
          "io": {"n": 1, "cap": 1}, "scale": {"n": 1, "cap": 1},
          "depth": {"small": 1, "big": 100_000, "fill_cap": 1, "fill_cap_ours": 1, "k": 1, "reps": 1}}


def cells(**medians: float) -> dict[str, Any]:
    return {key: {"values": [v], "median": v, "min": v, "max": v} for key, v in medians.items()}


@pytest.mark.parametrize(
    ("key", "now", "before", "worse"),
    [
        ("drain", 94.0, 100.0, True),  # ↑ column: 6% fewer tasks/s
        ("drain", 96.0, 100.0, False),
        ("drain", 150.0, 100.0, False),
        ("p50", 1.06, 1.0, True),  # ↓ column: 6% more ms
        ("p50", 1.04, 1.0, False),
        ("p50", 0.5, 1.0, False),
    ],
)
def test_versus_flags_a_column_more_than_5_percent_worse(key: str, now: float, before: float, worse: bool) -> None:
    got = report.versus(cells(**{key: now}), cells(**{key: before}))
    assert got == {key: {"ratio": pytest.approx(now / before), "worse": worse}}


def test_versus_skips_columns_missing_on_either_side_or_zero() -> None:
    got = report.versus(cells(drain=100.0, p50=1.0, io=5.0), cells(drain=100.0, p99=1.0, io=0.0))
    assert set(got) == {"drain"}


def _drain(rate: float) -> dict[str, Any]:
    return {"ok": True, "result": {
        "enqueue": {"rate": rate, "partial": False, "ceiling": rate * 2},
        "drain": {"rate": rate, "partial": False, "startup": 0.5,
                  "redis": {"cpu_us": 50.0, "script_calls": 1, "commands": {}}},
        "memory_queued": 700.0, "bulk": {"rate": rate * 3}, "tuned": {"rate": rate * 2},
    }}


def _data(rates: dict[str, float], failed: dict[str, str] | None = None) -> dict[str, Any]:
    base = "31e3130"
    rows = [
        {"library": "orchestrator", "variant": "thread", "label": "orchestrator", "main": True, "baseline": ""},
        {"library": "orchestrator", "variant": "thread", "label": report.baseline_label("orchestrator", base),
         "main": True, "baseline": base},
        {"library": "rq", "variant": "simple", "label": "RQ SimpleWorker", "main": True},
    ]
    return {"params": PARAMS, "rows": rows, "install_failed": failed or {}, "ceiling": [], "workloads": ["drain"],
            "runs": {label: {"drain": [_drain(rate)]} for label, rate in rates.items()},
            "started": "now", "cpus": 2, "python": "3.11", "redis": "7", "reps": 1, "quick": True, "seconds": 60.0,
            "baseline": {"rev": base, "sha": base, "subject": "README", "current": "c60be70"}}


def test_summary_pairs_each_row_with_its_baseline_and_keeps_the_baseline_out_of_the_peer_ratio() -> None:
    data = _data({"orchestrator": 90.0, "orchestrator (31e3130)": 1000.0, "RQ SimpleWorker": 45.0})
    summary = report.summarize(data)
    assert summary["ratios"]["drain"]["ours"] == ("orchestrator", 90.0)
    versus = summary["versus"]["orchestrator"]
    assert versus["baseline"] == "orchestrator (31e3130)"
    assert versus["columns"]["drain"] == {"ratio": pytest.approx(0.09), "worse": True}
    assert summary["rows"]["orchestrator"]["io"]["na"] == report.NOT_RUN  # --workloads drain
    text = report.markdown(data, summary)
    assert "## vs baseline 31e3130 (README)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("- orchestrator vs orchestrator (31e3130): "))
    assert "enqueue 0.09x **worse**; bulk enqueue 0.09x **worse**; drain 0.09x **worse**" in line
    assert "start-up s 1.00x; " in line
    assert line.endswith("(4 worse than 5%: enqueue, bulk enqueue, drain, drain tuned)")


def test_a_baseline_that_failed_to_install_fails_its_rows_alone() -> None:
    data = _data({"orchestrator": 90.0}, failed={"orchestrator (31e3130)": "no such commit"})
    summary = report.summarize(data)
    assert summary["rows"]["orchestrator (31e3130)"] == {"install_failed": "no such commit"}
    assert "median" in summary["rows"]["orchestrator"]["drain"]
    assert summary["versus"]["orchestrator"]["columns"] == {}
    assert "- orchestrator vs orchestrator (31e3130): nothing to compare\n" in report.markdown(data, summary)


def _incr(drain_rate: float, enqueue_us: float, task_us: float, job_us: float) -> dict[str, Any]:
    def drain(rate: float, cpu: float) -> dict[str, Any]:
        return {"rate": rate, "partial": False, "startup": 0.5, "redis": {"cpu_us": cpu, "script_calls": 2,
                                                                           "commands": {}}}

    return {"ok": True, "result": {
        "job_us": job_us,
        "enqueue": {"rate": 4000.0, "done": 10, "of": 10, "partial": False, "cpu_us": enqueue_us},
        "drain": drain(drain_rate, task_us), "tuned": drain(drain_rate * 2, task_us / 2),
        "procs2": {"rate": drain_rate * 1.5, "partial": True}, "procs4": {"rate": drain_rate * 1.2, "partial": False},
    }}


def test_incr_figures_are_net_of_the_job_and_give_what_one_redis_core_carries() -> None:
    got = report.report_rtt.per_run(_incr(2000.0, enqueue_us=60.0, task_us=75.0, job_us=99.0)["result"], 35.0)
    assert got["rtt_net"] == pytest.approx(40.0)
    assert got["rtt_lifecycle"] == pytest.approx(100.0)
    assert got["rtt_core"] == pytest.approx(10_000.0)
    assert got["rtt_cpu_tuned"] == pytest.approx(37.5)
    assert got["rtt_procs4"] == pytest.approx(2400.0)


def test_incr_figures_missing_a_phase_leave_their_derived_cells_empty() -> None:
    run = _incr(2000.0, enqueue_us=60.0, task_us=75.0, job_us=35.0)["result"]
    run["tuned"] = {"na": "one job at a time per worker process"}
    got = report.report_rtt.per_run(run, None)
    assert got["rtt_net"] is None and got["rtt_lifecycle"] is None and got["rtt_core"] is None
    assert got["rtt_tuned"] is None and got["rtt_cpu_drain"] == pytest.approx(75.0)


def test_incr_table_targets_and_baseline_comparison() -> None:
    data = _data({})
    data["workloads"] = ["incr"]
    data["params"] = dict(PARAMS, incr={"n": 10, "cap": 1, "enqueue_cap": 1, "scale_n": 5, "scale_cap": 1,
                                        "procs": [2, 4]})
    data["runs"] = {"orchestrator": {"incr": [_incr(5000.0, 50.0, 70.0, 99.0)]},  # a sample spoiled by load
                    "orchestrator (31e3130)": {"incr": [_incr(2000.0, 100.0, 150.0, 35.0)]},
                    "RQ SimpleWorker": {"incr": [_incr(1000.0, 40.0, 100.0, 35.0)]}}
    summary = report.summarize(data)
    rows = summary["rows"]
    assert rows["orchestrator"]["drain"]["na"] == report.NOT_RUN  # --workloads incr
    assert rows["orchestrator"]["rtt_lifecycle"]["median"] == pytest.approx(85.0)
    assert rows["RQ SimpleWorker"]["rtt_procs2"]["partial"]
    assert summary["ratios"]["rtt_drain"]["ratio"] == pytest.approx(5.0)  # the baseline row is no peer
    assert summary["versus"]["orchestrator"]["columns"]["rtt_cpu_enqueue"] == {"ratio": pytest.approx(0.5),
                                                                               "worse": False}
    text = report.markdown(data, summary)
    assert "## One Redis round trip per job (INCR)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("| orchestrator * | 4,000 | 5,000 | 10,000 |"))
    assert line.endswith("| 99.0 | 35.0 | 85.0 | 11,765 |")  # net of the run's median job cost, not its own
    assert "- INCR drain, default settings, orchestrator ≥ 2x the fastest peer: met, 5.00x" in text
    assert "- Redis CPU per claim + complete, net of the job's INCR ≤ 40 µs (orchestrator): met, 35 µs" in text
    assert "- Redis CPU per lifecycle, net of the job ≤ 100 µs (orchestrator): met, 85 µs" in text
    assert "orchestrator 11,765, RQ SimpleWorker 9,524" in text
    assert "INCR drain /s (1 proc) 2.50x" in text  # the vs-baseline line covers the incr columns
    assert "rtt_job" not in summary["versus"]["orchestrator"]["columns"]  # the job's INCR is no engine figure
