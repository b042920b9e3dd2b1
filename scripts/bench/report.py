"""The benchmark's table: medians with their spread, the ratio to the fastest peer, the targets.

Owns turning the raw runs that ``driver.py`` collected into one summary (per row and
column: the values, the median, min and max, and why a cell is empty) and rendering it as
markdown; the one-round-trip workload's own table is ``report_rtt``'s. Does not run anything.
Standard library only, so the chart's venv can import it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import report_rtt

ORCH = "orchestrator"
MAIN_ONLY = "main-row-only"  # scale and depth run once per library, on its main row
NOT_RUN = "not-run"  # the column's workload was left out (--workloads)
TOLERANCE = 0.05  # the project rule: a change keeps each benchmark figure within 5% of the commit before


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    higher_is_better: bool
    unit: str = ""


COLUMNS = (
    Column("enqueue", "enqueue /s", True),
    Column("bulk", "bulk enqueue /s", True),
    Column("drain", "drain /s", True),
    Column("tuned", "drain tuned /s", True),
    Column("startup", "start-up s", False),
    Column("p50", "latency p50 ms", False),
    Column("p99", "latency p99 ms", False),
    Column("io", "I/O 10 ms /s", True),
    Column("scale2", "2 procs /s", True),
    Column("scale4", "4 procs /s", True),
    Column("depth_enqueue", "enqueue cost deep÷1k", False),
    Column("depth_drain", "drain cost deep÷1k", False),
    Column("memory", "Redis B/task", False),
    Column("redis_cpu", "Redis CPU µs/task", False),
)
ALL_COLUMNS = COLUMNS + report_rtt.COLUMNS  # the main table's, then the incr table's
WORKLOADS = ("drain", "latency", "io", "scale", "depth", "incr")
FROM = {"p50": ("latency",), "p99": ("latency",), "io": ("io",), "scale2": ("scale",), "scale4": ("scale",),
        "depth_enqueue": ("depth",), "depth_drain": ("depth",), "memory": ("depth", "drain")}  # else drain


# ----------------------------------------------------------------------------- extraction


def _results(runs: dict[str, list[dict[str, Any]]], workload: str) -> list[dict[str, Any]]:
    return [p["result"] for p in runs.get(workload, []) if p.get("ok")]


def _errors(runs: dict[str, list[dict[str, Any]]], workload: str) -> list[str]:
    return [p["error"] for p in runs.get(workload, []) if not p.get("ok")]


def _cell(values: list[float], partial: bool = False, na: str | None = None, error: str | None = None,
          note: str | None = None) -> dict[str, Any]:
    values = [v for v in values if v is not None]
    cell: dict[str, Any] = {"values": values, "partial": partial}
    if values:
        cell.update(median=statistics.median(values), min=min(values), max=max(values))
    elif na:
        cell["na"] = na
    elif error:
        cell["error"] = error
    if note:
        cell["note"] = note
    return cell


def _drain_cells(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    res, err = _results(runs, "drain"), _errors(runs, "drain")
    error = err[0] if err else None
    cells = {
        "enqueue": _cell([r["enqueue"]["rate"] for r in res], any(r["enqueue"]["partial"] for r in res), error=error),
        "drain": _cell([r["drain"]["rate"] for r in res], any(r["drain"]["partial"] for r in res), error=error),
        "startup": _cell([r["drain"]["startup"] for r in res], error=error),
        "redis_cpu": _cell([r["drain"]["redis"]["cpu_us"] for r in res], error=error),
        "memory_queued": _cell([r["memory_queued"] for r in res], error=error),
        # single enqueue as a share of the EVALSHA round trip timed between its batches
        "enqueue_share": _cell([r["enqueue"]["rate"] / r["enqueue"]["ceiling"] for r in res
                                if r["enqueue"].get("ceiling")], error=error),
    }
    bulk = [r["bulk"]["rate"] for r in res if "bulk" in r]
    cells["bulk"] = _cell(bulk, na=None if bulk or not res else "no bulk-enqueue API", error=error)
    tuned = [r["tuned"] for r in res]
    na = next((t["na"] for t in tuned if "na" in t), None)
    cells["tuned"] = _cell([t["rate"] for t in tuned if "rate" in t], any(t.get("partial") for t in tuned),
                           na=na, error=error)
    return cells


def _latency_cells(runs: dict[str, list[dict[str, Any]]], asked: int) -> dict[str, dict[str, Any]]:
    res, err = _results(runs, "latency"), _errors(runs, "latency")
    error = err[0] if err else None
    few = [r["n"] for r in res if r["n"] < asked]
    note = f"{min(few)}-{max(few)} of {asked} samples within the time cap" if few else None
    return {
        "p50": _cell([r["p50"] for r in res], error=error, note=note),
        "p99": _cell([r["p99"] for r in res], error=error, note=note),
    }


def _io_cells(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    res, err = _results(runs, "io"), _errors(runs, "io")
    na = next((r["na"] for r in res if "na" in r), None)
    return {"io": _cell([r["rate"] for r in res if "rate" in r], any(r.get("partial") for r in res), na=na,
                        error=err[0] if err else None)}


def _scale_cells(runs: dict[str, list[dict[str, Any]]], main: bool) -> dict[str, dict[str, Any]]:
    res, err = _results(runs, "scale"), _errors(runs, "scale")
    na = None if main else MAIN_ONLY
    out = {}
    for k in ("2", "4"):
        got = [r[k] for r in res if k in r]
        out[f"scale{k}"] = _cell([g["rate"] for g in got], any(g["partial"] for g in got), na=na,
                                 error=err[0] if err else None)
    return out


def _depth_cells(runs: dict[str, list[dict[str, Any]]], main: bool, memory_queued: dict[str, Any]
                 ) -> dict[str, dict[str, Any]]:
    res, err = _results(runs, "depth"), _errors(runs, "depth")
    error = err[0] if err else None
    na = None if main else MAIN_ONLY
    if not res:
        if main and memory_queued.get("values"):
            memory = dict(memory_queued, note=f"{memory_queued['median']:.0f} B/task with the drain's queue")
        else:
            memory = _cell([], na=na, error=error)
        return {"depth_enqueue": _cell([], na=na, error=error), "depth_drain": _cell([], na=na, error=error),
                "memory": memory}
    d = res[0]
    small, big = d["small"], d["big"]
    rates = {label: [x for x in d[label]["drain"] if x] for label in ("small", "big")}
    note = (f"deep = {big['depth']:,} queued (filled in {big['fill_s']:.0f} s); single enqueue "
            f"{statistics.median(small['enqueue_us']):.0f} -> {statistics.median(big['enqueue_us']):.0f} us")
    if rates["small"] and rates["big"]:
        note += (f", drain {statistics.median(rates['small']):,.0f} -> "
                 f"{statistics.median(rates['big']):,.0f} tasks/s")
    if "trip_us" in big and "trip_us" in small:  # the cost in round trips of the same moment
        big_rt = [e / t for e, t in zip(big["enqueue_us"], big["trip_us"], strict=True)]
        small_rt = [e / t for e, t in zip(small["enqueue_us"], small["trip_us"], strict=True)]
        note += (f"; in round trips {statistics.median(small_rt):.2f} -> {statistics.median(big_rt):.2f}")
        enq = [b / s for b, s in zip(big_rt, small_rt, strict=True)]
    else:
        enq = [b / s for b, s in zip(big["enqueue_us"], small["enqueue_us"], strict=True)]
    drain = [s / b for s, b in zip(small["drain"], big["drain"], strict=True) if s and b]
    return {
        "depth_enqueue": _cell(enq, note=note),
        "depth_drain": _cell(drain, small.get("partial") or big.get("partial")),
        "memory": _cell([big["memory"]]),
        "depth_raw": {"small": small, "big": big},
    }


def summarize(data: dict[str, Any]) -> dict[str, Any]:
    """{row label: {column key: cell}} plus the ceiling and the ratios."""
    rows: dict[str, dict[str, Any]] = {}
    asked = data["params"]["latency"]["samples"]
    job = report_rtt.job_cost(data)
    for row in data["rows"]:
        label = row["label"]
        failed = data["install_failed"].get(label) or data["install_failed"].get(row["library"])
        if failed:
            rows[label] = {"install_failed": failed}
            continue
        runs = data["runs"].get(label, {})
        cells = _drain_cells(runs)
        cells.update(_latency_cells(runs, asked))
        cells.update(_io_cells(runs))
        cells.update(_scale_cells(runs, row["main"]))
        cells.update(_depth_cells(runs, row["main"], cells["memory_queued"]))
        cells.update(report_rtt.cells(runs, _cell, job))
        for col in ALL_COLUMNS:
            wanted = ("incr",) if col.key.startswith("rtt_") else FROM.get(col.key, ("drain",))
            if not set(wanted) & set(data.get("workloads", WORKLOADS)):
                cells[col.key] = _cell([], na=NOT_RUN)
        rows[label] = cells
    ceiling = {k: _cell([c[k] for c in data["ceiling"]]) for k in ("ping", "evalsha", "pipelined")}
    libraries = {r["label"]: r["library"] for r in data["rows"]}
    baselines = _baseline_labels(data)
    ratios = {}
    for col in ALL_COLUMNS:
        ours = _best(rows, col, lambda label: libraries[label] == ORCH and label not in baselines)
        peers = _best(rows, col, lambda label: libraries[label] != ORCH)
        if ours and peers:
            ratios[col.key] = {"ours": ours, "peer": peers, "ratio": ours[1] / peers[1]}
    return {"rows": rows, "ceiling": ceiling, "ratios": ratios, "versus": versus_rows(data, rows)}


# ----------------------------------------------------------------------------- baseline


def baseline_label(label: str, sha: str) -> str:
    """The label of a row run on the baseline commit (``scripts/bench/run --baseline``)."""
    return f"{label} ({sha})"


def _baseline_labels(data: dict[str, Any]) -> set[str]:
    return {r["label"] for r in data["rows"] if r.get("baseline")}


def versus(current: dict[str, Any], baseline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{column key: {"ratio": current ÷ baseline, "worse": beyond TOLERANCE}} for columns both rows have.

    Worse means below 1 - TOLERANCE in a ↑ column, above 1 + TOLERANCE in a ↓ one.
    """
    out = {}
    for col in ALL_COLUMNS:
        if col.key in report_rtt.NOT_COMPARED:
            continue
        now, before = (cells.get(col.key, {}).get("median") for cells in (current, baseline))
        if now is None or not before:
            continue
        ratio = now / before
        worse = ratio < 1 - TOLERANCE if col.higher_is_better else ratio > 1 + TOLERANCE
        out[col.key] = {"ratio": ratio, "worse": worse}
    return out


def versus_rows(data: dict[str, Any], rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{current row label: {"baseline": its baseline row's label, "columns": versus(...)}}."""
    current = {(r["library"], r["variant"]): r["label"] for r in data["rows"] if not r.get("baseline")}
    out = {}
    for row in data["rows"]:
        label = current.get((row["library"], row["variant"]))
        if row.get("baseline") and label in rows and row["label"] in rows:
            out[label] = {"baseline": row["label"], "columns": versus(rows[label], rows[row["label"]])}
    return out


def versus_lines(data: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """The "vs baseline" section: per orchestrator row, current ÷ baseline in each column, flags beyond 5%."""
    if not summary.get("versus"):
        return []
    base = data["baseline"]
    lines = ["", f"## vs baseline {base['sha']} ({base['subject']})", "",
             f"Current checkout {base['current']} ÷ baseline {base['sha']}, per column (medians of the same run); "
             f"**worse** marks a figure more than {TOLERANCE:.0%} worse than the baseline's.", ""]
    headers = {c.key: c.header.split(" /")[0] for c in COLUMNS}
    headers.update({c.key: "INCR " + c.header for c in report_rtt.COLUMNS})
    for label, got in summary["versus"].items():
        cols = got["columns"]
        if not cols:
            lines.append(f"- {label} vs {got['baseline']}: nothing to compare")
            continue
        parts = [f"{headers[k]} {v['ratio']:.2f}x" + (" **worse**" if v["worse"] else "") for k, v in cols.items()]
        worse = [headers[k] for k, v in cols.items() if v["worse"]]
        verdict = f"{len(worse)} worse than {TOLERANCE:.0%}: {', '.join(worse)}" if worse else \
            f"all within {TOLERANCE:.0%} or better"
        lines.append(f"- {label} vs {got['baseline']}: {'; '.join(parts)} ({verdict})")
    return lines


def _best(rows: dict[str, dict[str, Any]], col: Column | report_rtt.Column,
          keep: Callable[[str], bool]) -> tuple[str, float] | None:
    found = [(label, cells[col.key]["median"]) for label, cells in rows.items()
             if keep(label) and col.key in cells and "median" in cells[col.key]]
    if not found:
        return None
    pick = max if col.higher_is_better else min
    return pick(found, key=lambda item: item[1])


# -------------------------------------------------------------------------------- render


def fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_cell(cell: dict[str, Any], notes: list[str], where: str) -> str:
    if "median" in cell:
        text = fmt(cell["median"])
        if len(cell["values"]) > 1 and fmt(cell["min"]) != fmt(cell["max"]):
            text += f" [{fmt(cell['min'])}-{fmt(cell['max'])}]"
        if cell.get("partial"):
            text += " †"
        if cell.get("note"):
            notes.append(f"{where}: {cell['note']}")
            text += f" ({len(notes)})"
        return text
    if cell.get("na") == MAIN_ONLY:
        return "·"
    if cell.get("na") == NOT_RUN:
        return "—"
    reason = cell.get("na") or cell.get("error") or "no data"
    notes.append(f"{where}: {reason}")
    return f"{'n/a' if 'na' in cell else 'failed'} ({len(notes)})"


def markdown(data: dict[str, Any], summary: dict[str, Any]) -> str:
    params = data["params"]
    big = params["depth"]["big"]
    deep = f"{big // 1_000_000}M" if big >= 1_000_000 else f"{big // 1000}k"
    headers = [c.header.replace("deep", deep) for c in COLUMNS]
    arrows = ["↑" if c.higher_is_better else "↓" for c in COLUMNS]
    lines = [
        f"# Benchmark: orchestrator and its peers ({'quick' if data['quick'] else 'full'} run)",
        "",
        f"{data['started']}, {data['cpus']} CPUs, Python {data['python']}, redis-server {data['redis']} "
        f"(private, loopback, no persistence). Medians of {data['reps']} run(s), [min-max] across runs; "
        f"↑ higher is better, ↓ lower is better. Run took {data['seconds'] / 60:.1f} min.",
        "",
        "| row | " + " | ".join(f"{h} {a}" for h, a in zip(headers, arrows, strict=True)) + " |",
        "|---|" + "---:|" * len(COLUMNS),
    ]
    notes: list[str] = []
    main = {r["label"] for r in data["rows"] if r["main"]}
    for label, cells in summary["rows"].items():
        shown = f"{label} *" if label in main else label
        if "install_failed" in cells:
            row = [f"install failed: {cells['install_failed']}"] + ["—"] * (len(COLUMNS) - 1)
        else:
            row = [render_cell(cells[c.key], notes, f"{label}, {h}") for c, h in zip(COLUMNS, headers, strict=True)]
        lines.append(f"| {shown} | " + " | ".join(row) + " |")
    ratio_row = []
    for col in COLUMNS:
        got = summary["ratios"].get(col.key)
        ratio_row.append(f"{got['ratio']:.2f}x" if got else "—")
    lines.append("| **orchestrator ÷ best peer** | " + " | ".join(ratio_row) + " |")
    lines.append("")
    lines.append(
        "The ratio compares orchestrator's best row with the best peer row in each column (above 1 is "
        "better for ↑ columns, below 1 for ↓). † stopped at the time cap: the rate is over what completed. "
        "Drains count from the first task run to the last, so start-up is its own column; with several "
        "processes, from the moment every process has run a task. · the scale and depth workloads (and memory) "
        "run once per library, on its row marked *."
    )
    c = summary["ceiling"]
    lines += ["", "Round-trip ceiling, one redis-py client with hiredis, same run: "
              + ", ".join(f"{k} {render_cell(c[k], notes, f'ceiling {k}')}/s"
                          for k in ("ping", "evalsha", "pipelined")) + "."]
    lines += report_rtt.summary_lines(summary["rows"], data, render_cell, notes, summary["ratios"])
    lines += versus_lines(data, summary)
    lines += ["", "## Targets (issue 6)", ""] + [f"- {t}" for t in targets(data, summary)]
    lines += ["", "## Sizes", "", sizes(params)]
    if notes:
        lines += ["", "## Notes", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    lines += ["", "## Where Redis time goes (drain, default settings, INFO commandstats per task)", ""]
    lines += redis_profile(summary["rows"], data)
    return "\n".join(lines) + "\n"


def sizes(params: dict[str, Any]) -> str:
    d, lat, io, sc, dp = (params[k] for k in ("drain", "latency", "io", "scale", "depth"))
    return (
        f"enqueue and drain {d['n']:,} no-op tasks (enqueue capped at {d['enqueue_cap']:g} s, each drain at "
        f"{d['cap']:g} s); latency {lat['samples']} tasks (capped at {lat['cap']:g} s); I/O {io['n']:,} tasks of "
        f"10 ms at concurrency 100 (cap {io['cap']:g} s); scale {sc['n']:,} tasks on 2 and 4 processes (cap "
        f"{sc['cap']:g} s; 1 process is the drain column); depth: {dp['k']:,} single enqueues and a "
        f"{dp['k']:,}-task drain at {dp['small']:,} and at {dp['big']:,} queued (fill capped at "
        f"{dp['fill_cap']:g} s for the peers, {dp['fill_cap_ours']:g} s for orchestrator), {dp['reps']} time(s) "
        "each; memory per task is INFO used_memory delta / N of "
        "the deep fill."
    )


def _median(cells: dict[str, Any], key: str) -> float | None:
    return cells.get(key, {}).get("median")


def targets(data: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    rows, ratios = summary["rows"], summary["ratios"]
    out = []

    def ratio_target(key: str, what: str, need: float) -> None:
        got = ratios.get(key)
        if not got:
            out.append(f"{what}: not measured")
            return
        ok = got["ratio"] >= need
        out.append(f"{what} ≥ {need:g}x the fastest peer: {'met' if ok else 'MISSED'}, {got['ratio']:.2f}x "
                   f"({got['ours'][0]} {fmt(got['ours'][1])}/s vs {got['peer'][0]} {fmt(got['peer'][1])}/s)")

    ratio_target("drain", "drain, default settings", 2)
    ratio_target("tuned", "drain, tuned", 2)
    ratio_target("io", "I/O-bound", 1.5)
    baselines = _baseline_labels(data)
    rows = {label: cells for label, cells in rows.items() if label not in baselines}
    shares = {label: _median(cells, "enqueue_share") for label, cells in rows.items()}
    ours_share = max(((label, v) for label, v in shares.items() if label.startswith(ORCH) and v),
                     key=lambda item: item[1], default=None)
    if ours_share:
        label, share = ours_share
        peers = ", ".join(f"{peer} {v:.0%}" for peer, v in sorted(shares.items(), key=lambda kv: -(kv[1] or 0))
                          if v and not peer.startswith(ORCH))
        out.append(f"enqueue one at a time within 15% of the sequential round-trip ceiling: "
                   f"{'met' if share >= 0.85 else 'MISSED'}, {share:.0%} of the EVALSHA round trip timed "
                   f"between its batches ({label}{'; the peers: ' + peers if peers else ''})")
    else:  # results written before the paired ceiling existed: the run-start ceiling
        ceiling = summary["ceiling"]["evalsha"].get("median")
        ours = ratios.get("enqueue", {}).get("ours")
        if ceiling and ours:
            share = ours[1] / ceiling
            out.append(f"enqueue one at a time within 15% of the sequential round-trip ceiling: "
                       f"{'met' if share >= 0.85 else 'MISSED'}, {share:.0%} of {fmt(ceiling)} EVALSHA/s "
                       f"measured at the start of each repetition ({ours[0]} {fmt(ours[1])}/s)")
    ratio_target("bulk", "bulk enqueue", 2)
    orch = {label: cells for label, cells in rows.items() if label.startswith(ORCH) and "p50" in cells}
    for key, limit in (("p50", 1.0), ("p99", 3.0)):
        best = min(((label, _median(c, key)) for label, c in orch.items() if _median(c, key) is not None),
                   key=lambda item: item[1], default=None)
        if best:
            out.append(f"idle latency {key} ≤ {limit:g} ms: {'met' if best[1] <= limit else 'MISSED'}, "
                       f"{fmt(best[1])} ms ({best[0]})")
    main = rows.get(ORCH, {})
    for key, what in (("depth_enqueue", "enqueue"), ("depth_drain", "claim (drain)")):
        value = _median(main, key)
        if value is not None:
            out.append(f"{what} cost deep within 1.5x of 1k: {'met' if value <= 1.5 else 'MISSED'}, "
                       f"{value:.2f}x ({main['depth_enqueue'].get('note', '')})")
    got = ratios.get("memory")
    if got:
        out.append(f"memory per queued task no more than the leanest peer: {'met' if got['ratio'] <= 1 else 'see'}"
                   f" {fmt(got['ours'][1])} B vs {got['peer'][0]} {fmt(got['peer'][1])} B ({got['ratio']:.2f}x); "
                   "orchestrator keeps the whole task record (state, options, timestamps, lease) and an event")
    return out


def redis_profile(rows: dict[str, dict[str, Any]], data: dict[str, Any]) -> list[str]:
    out = ["| row | Redis CPU µs/task | script calls/task | top commands (µs/task, nested script commands "
           "counted in their script too) |", "|---|---:|---:|---|"]
    for row in data["rows"]:
        label = row["label"]
        runs = [p["result"]["drain"]["redis"] for p in data["runs"].get(label, {}).get("drain", []) if p.get("ok")]
        if not runs:
            continue
        last = runs[-1]
        top = ", ".join(f"{cmd} {v['usec']:.1f}" for cmd, v in list(last["commands"].items())[:5])
        cpu = statistics.median(r["cpu_us"] for r in runs)
        scripts = statistics.median(r["script_calls"] for r in runs)
        out.append(f"| {label} | {fmt(cpu)} | {scripts:.2f} | {top} |")
    return out
