"""The one-round-trip workload's table (``incr``): throughput and Redis CPU per task.

Owns turning the ``incr`` runs (``peers/_roundtrip.py``) into cells, their own markdown
table and the targets of issue 18: drain rates with 1, 2 and 4 worker processes and at
concurrency 100; Redis CPU per enqueue and per drained task; the engine's own CPU per task
net of the job's INCR (measured alone, ``job_us``); a lifecycle (enqueue + claim + complete,
net of the job) and what one Redis core carries at that cost (1 s / lifecycle). Does not run
anything. Standard library only (``report.py`` imports it, in the chart's venv too).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ORCH = "orchestrator"
DEF_ROW, ASYNC_ROW = "orchestrator", "orchestrator (async def)"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    higher_is_better: bool


COLUMNS = (
    Column("rtt_enqueue", "enqueue /s", True),
    Column("rtt_drain", "drain /s (1 proc)", True),
    Column("rtt_tuned", "drain c=100 /s", True),
    Column("rtt_procs2", "2 procs /s", True),
    Column("rtt_procs4", "4 procs /s", True),
    Column("rtt_cpu_enqueue", "Redis µs/enqueue", False),
    Column("rtt_cpu_drain", "Redis µs/task", False),
    Column("rtt_cpu_tuned", "Redis µs/task c=100", False),
    Column("rtt_job", "job's INCR µs", False),
    Column("rtt_net", "engine µs/task net", False),
    Column("rtt_lifecycle", "lifecycle µs net", False),
    Column("rtt_core", "tasks/s per Redis core", True),
)


def _get(run: dict[str, Any], *path: str) -> float | None:
    node: Any = run
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, int | float) else None


def job_cost(data: dict[str, Any]) -> float | None:
    """The job's own INCR, in Redis CPU µs: the median over every row and repetition of the run.

    The same command on the same Redis for every row, measured before each row's phases; one
    sample is 5,000 INCRs, which other load on a 2-core machine can double, so the run-wide
    median is subtracted from every row rather than each row's own sample.
    """
    values = [p["result"]["job_us"] for runs in data.get("runs", {}).values() for p in runs.get("incr", [])
              if p.get("ok") and "job_us" in p["result"]]
    return statistics.median(values) if values else None


def per_run(r: dict[str, Any], job: float | None) -> dict[str, float | None]:
    """One ``incr`` run's figures, derived ones included; ``job`` is the run's job cost (``job_cost``)."""
    enqueue = _get(r, "enqueue", "cpu_us")
    drain = _get(r, "drain", "redis", "cpu_us")
    net = drain - job if drain is not None and job is not None else None
    lifecycle = enqueue + net if enqueue is not None and net is not None else None
    return {
        "rtt_enqueue": _get(r, "enqueue", "rate"),
        "rtt_drain": _get(r, "drain", "rate"),
        "rtt_tuned": _get(r, "tuned", "rate"),
        "rtt_procs2": _get(r, "procs2", "rate"),
        "rtt_procs4": _get(r, "procs4", "rate"),
        "rtt_cpu_enqueue": enqueue,
        "rtt_cpu_drain": drain,
        "rtt_cpu_tuned": _get(r, "tuned", "redis", "cpu_us"),
        "rtt_job": _get(r, "job_us"),  # this row's own sample, shown; the run's median is subtracted
        "rtt_net": net,
        "rtt_lifecycle": lifecycle,
        "rtt_core": 1e6 / lifecycle if lifecycle and lifecycle > 0 else None,
    }


NOT_COMPARED = {"rtt_job"}  # the job's own request: a fact of the Redis and the run, not of the engine
PARTIAL = {"rtt_enqueue": ("enqueue",), "rtt_drain": ("drain",), "rtt_tuned": ("tuned",),
           "rtt_procs2": ("procs2",), "rtt_procs4": ("procs4",)}


def cells(runs: dict[str, list[dict[str, Any]]], make: Callable[..., dict[str, Any]],
          job: float | None) -> dict[str, dict[str, Any]]:
    """{column key: cell} for one row; ``make`` is report._cell (values, partial, na, error)."""
    got = runs.get("incr", [])
    res = [p["result"] for p in got if p.get("ok")]
    errors = [p["error"] for p in got if not p.get("ok")]
    error = errors[0] if errors else None
    figures = [per_run(r, job) for r in res]
    na = next((r["tuned"]["na"] for r in res if "na" in r.get("tuned", {})), None)
    out = {}
    for col in COLUMNS:
        values = [f[col.key] for f in figures if f[col.key] is not None]
        partial = any(r.get(part, {}).get("partial") for r in res for part in PARTIAL.get(col.key, ()))
        out[col.key] = make(values, partial, na=na if col.key in ("rtt_tuned", "rtt_cpu_tuned") else None,
                            error=error)
    return out


def table(rows: dict[str, dict[str, Any]], labels: list[str], main: set[str],
          render: Callable[[dict[str, Any], list[str], str], str], notes: list[str],
          ratios: dict[str, Any]) -> list[str]:
    """The markdown table of the ``incr`` columns, a ratio row last."""
    arrows = ["↑" if c.higher_is_better else "↓" for c in COLUMNS]
    lines = ["| row | " + " | ".join(f"{c.header} {a}" for c, a in zip(COLUMNS, arrows, strict=True)) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for label in labels:
        got = rows.get(label, {})
        if "install_failed" in got or COLUMNS[0].key not in got:
            continue
        shown = f"{label} *" if label in main else label
        lines.append(f"| {shown} | " + " | ".join(render(got[c.key], notes, f"{label}, INCR {c.header}")
                                                   for c in COLUMNS) + " |")
    lines.append("| **orchestrator ÷ best peer** | " + " | ".join(
        f"{ratios[c.key]['ratio']:.2f}x" if c.key in ratios else "—" for c in COLUMNS) + " |")
    return lines


def _median(rows: dict[str, dict[str, Any]], label: str, key: str) -> float | None:
    return rows.get(label, {}).get(key, {}).get("median")


def _best_peer(rows: dict[str, dict[str, Any]], peers: list[str], key: str) -> tuple[str, float] | None:
    found = [(label, v) for label in peers if (v := _median(rows, label, key)) is not None]
    return max(found, key=lambda item: item[1]) if found else None


def targets(rows: dict[str, dict[str, Any]], peers: list[str]) -> list[str]:
    """Issue 18's targets, each met or the measured gap."""
    out = []
    fastest = _best_peer(rows, peers, "rtt_drain")
    for label in (DEF_ROW, ASYNC_ROW):
        ours = _median(rows, label, "rtt_drain")
        if ours is None or fastest is None:
            continue
        ratio = ours / fastest[1]
        out.append(f"INCR drain, default settings, {label} ≥ 2x the fastest peer: {'met' if ratio >= 2 else 'MISSED'}, "
                   f"{ratio:.2f}x ({ours:,.0f}/s vs {fastest[0]} {fastest[1]:,.0f}/s)")
    for key, what, limit in (("rtt_cpu_enqueue", "Redis CPU per enqueue", 60.0),
                             ("rtt_net", "Redis CPU per claim + complete, net of the job's INCR", 40.0),
                             ("rtt_lifecycle", "Redis CPU per lifecycle, net of the job", 100.0)):
        for label in (DEF_ROW, ASYNC_ROW):
            got = _median(rows, label, key)
            if got is not None:
                out.append(f"{what} ≤ {limit:g} µs ({label}): {'met' if got <= limit else 'MISSED'}, {got:.0f} µs")
    carried = [(label, v) for label in [DEF_ROW, ASYNC_ROW, *peers] if (v := _median(rows, label, "rtt_core"))]
    if carried:
        out.append("one Redis core carries (1 s / lifecycle, tasks/s): "
                   + ", ".join(f"{label} {v:,.0f}" for label, v in carried))
    return out


def summary_lines(rows: dict[str, dict[str, Any]], data: dict[str, Any],
                  render: Callable[[dict[str, Any], list[str], str], str], notes: list[str],
                  ratios: dict[str, Any]) -> list[str]:
    """The section of the markdown report, or nothing when ``incr`` did not run."""
    if "incr" not in data.get("workloads", ()):
        return []
    labels = [r["label"] for r in data["rows"]]
    main = {r["label"] for r in data["rows"] if r["main"]}
    peers = [r["label"] for r in data["rows"] if r["library"] != ORCH]
    p = data["params"].get("incr", {})
    lines = ["", "## One Redis round trip per job (INCR)", "",
             f"Each job makes one INCR of its own (sync redis-py in `def` tasks, redis.asyncio in `async def` "
             f"ones) on the same Redis. {p.get('n', 0):,} single enqueues (cap {p.get('enqueue_cap', 0):g} s), "
             f"a default drain and a concurrency-100 drain (cap {p.get('cap', 0):g} s each), then "
             f"{p.get('scale_n', 0):,} tasks on 2 and on 4 worker processes (cap {p.get('scale_cap', 0):g} s; "
             f"this machine has {data.get('cpus')} CPUs, so beyond 2 processes the workers, the producer and "
             "Redis share them). Redis CPU is used_cpu_user + used_cpu_sys of redis-server over the phase ÷ "
             "tasks; the job's INCR is measured alone (5,000 sequential INCRs from one client, before each row; "
             "the column shows the row's samples) and its median over the run is subtracted: net = per task - "
             "that median; lifecycle = enqueue + net; a Redis core carries 1 s ÷ lifecycle tasks/s.", ""]
    lines += table(rows, labels, main, render, notes, ratios)
    lines += ["", "Targets (issue 18):", ""] + [f"- {t}" for t in targets(rows, peers)]
    return lines
