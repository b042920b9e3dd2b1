"""The bar chart of a benchmark run: ``chart.py RESULTS.json OUT.png [MORE.png ...]``.

Owns drawing the summary that ``driver.py`` wrote (medians, min-max as error bars), one
panel per column. Runs in scripts/bench/.venvs/bench, the only place matplotlib is
installed: it is not a dependency of the project.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

PANELS = (
    ("enqueue", "enqueue, one call each (tasks/s)", False),
    ("bulk", "bulk enqueue (tasks/s)", False),
    ("drain", "drain, default settings (tasks/s)", False),
    ("tuned", "drain, tuned (tasks/s)", False),
    ("io", "I/O-bound, 10 ms tasks, concurrency 100 (tasks/s)", False),
    ("scale4", "drain with 4 processes (tasks/s)", False),
    ("p50", "idle latency p50 (ms, log)", True),
    ("p99", "idle latency p99 (ms, log)", True),
)


def main() -> None:
    with open(sys.argv[1]) as f:
        data = json.load(f)
    rows = data["summary"]["rows"]
    labels = [r["label"] for r in data["rows"]]
    baselines = {r["label"] for r in data["rows"] if r.get("baseline")}  # --baseline REV rows
    fig, axes = plt.subplots(4, 2, figsize=(14, 18))
    for ax, (key, title, log) in zip(axes.flat, PANELS, strict=True):
        names, values, low, high, colors = [], [], [], [], []
        for label in labels:
            cell = rows.get(label, {}).get(key, {})
            if "median" not in cell:
                continue
            names.append(label)
            values.append(cell["median"])
            low.append(cell["median"] - cell["min"])
            high.append(cell["max"] - cell["median"])
            colors.append("tab:orange" if label in baselines
                          else "tab:red" if label.startswith("orchestrator") else "tab:gray")
        ax.barh(names, values, xerr=[low, high], color=colors, capsize=3)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        if log and values:
            ax.set_xscale("log")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:,.0f}" if v >= 100 else f" {v:.2g}", va="center", fontsize=8)
    kind = "quick" if data["quick"] else "full"
    fig.suptitle(f"orchestrator vs peers, {kind} run {data['started']} (median, min-max over {data['reps']} runs)")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    for out in sys.argv[2:]:
        fig.savefig(out, dpi=80)


if __name__ == "__main__":
    main()
