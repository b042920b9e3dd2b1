"""The dashboard's SVG charts (server/dashboard/charts.py) and the shaping of the overview's
numbers (views.py): well-formed SVG, a sane scale, gaps for missing values, escaped text."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from orchestrator.metrics_records import QueueOverview, RollupPoint, SeriesPoint
from orchestrator.server.dashboard import views
from orchestrator.server.dashboard.charts import Line, grid_lines, line_chart, nice_max, short

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


@pytest.mark.parametrize(("value", "expected"), [
    (0, 1), (-3, 1), (math.nan, 1), (math.inf, 1), (0.3, 0.5), (1, 1), (1.01, 2), (7, 10), (23, 25), (240, 250),
    (1234, 2000),
])
def test_nice_max(value: float, expected: float) -> None:
    assert nice_max(value) == pytest.approx(expected)


@pytest.mark.parametrize(("scale", "steps"), [(1, 4), (2, 4), (2.5, 5), (5, 5), (25, 5), (100, 4), (0.5, 5)])
def test_grid_lines_keep_round_values(scale: float, steps: int) -> None:
    assert grid_lines(scale) == steps


def test_short_numbers() -> None:
    assert [short(0), short(2.5), short(1200), short(3_000_000), short(0.25, "%")] == ["0", "2.5", "1.2k", "3M", "25%"]


def test_a_chart_is_well_formed_svg_with_one_point_per_value() -> None:
    labels = [f"10:{m:02d}" for m in range(60)]
    svg = parse(line_chart([Line("succeeded", list(range(60))), Line("failed", [1.0] * 60)], labels, title="T"))
    assert svg.tag == f"{SVG}svg" and svg.get("viewBox") == "0 0 420 200"
    assert len(svg.findall(f"{SVG}polyline")) == 2
    assert len(svg.findall(f"{SVG}circle")) == 120
    texts = [t.text for t in svg.iter(f"{SVG}text")]
    assert "10:00" in texts and "10:59" in texts and "100" in texts  # the scale tops at nice_max(59)
    ys = [float(p.split(",")[1]) for p in svg.findall(f"{SVG}polyline")[0].get("points", "").split()]
    assert ys == sorted(ys, reverse=True)  # rising values go up the picture


def test_missing_values_break_the_line_and_nothing_at_all_says_so() -> None:
    svg = parse(line_chart([Line("rate", [0.5, None, 0.25, math.nan, 1.0])], list("abcde"), title="r", unit="%",
                           top=1.0))
    assert len(svg.findall(f"{SVG}polyline")) == 3 and len(svg.findall(f"{SVG}circle")) == 3
    assert "100%" in [t.text for t in svg.iter(f"{SVG}text")]
    empty = parse(line_chart([Line("x", [None, None])], ["a", "b"], title="e"))
    assert "no data yet" in [t.text for t in empty.iter(f"{SVG}text")]
    assert parse(line_chart([], [], title="nothing")).tag == f"{SVG}svg"
    one = parse(line_chart([Line("x", [3])], ["only"], title="one"))
    assert len(one.findall(f"{SVG}circle")) == 1


def test_text_is_escaped() -> None:
    svg = line_chart([Line("<script>", [1, 2])], ["<a>", "&b"], title='"quoted" <t>')
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "&amp;b" in svg
    parse(svg)


def test_overview_charts_and_the_failure_rate() -> None:
    start = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    rows = [SeriesPoint(minute=start + timedelta(minutes=i), succeeded=4, failed=5 if i == 0 else 1) for i in range(3)]
    charts = views.overview_charts(rows, live_load=0.5)
    assert set(charts) == {"throughput", "failure_rate", "load"}
    rate = parse(charts["failure_rate"])
    first = next(rate.iter(f"{SVG}circle")).find(f"{SVG}title")
    assert first is not None and str(first.text).endswith("56%")
    load = parse(charts["load"])  # no sampled load in the series: the live one, at the last minute
    assert len(load.findall(f"{SVG}circle")) == 1


def test_task_actions_and_times() -> None:
    assert views.task_actions("failed") == ("retry", "delete")
    assert views.task_actions("running") == ("cancel",)
    assert views.task_actions(None) == ()
    now = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    assert views.ago(now - timedelta(seconds=12), now) == "12 s ago"
    assert views.ago(now + timedelta(minutes=3), now) == "in 3 min"
    assert views.ago(None, now) == "\u2014"
    assert views.duration(now, now + timedelta(milliseconds=250)) == "250 ms"



def test_day_charts_from_rollups_and_the_load_now() -> None:
    assert views.day_charts([]) == {}
    start = datetime(2026, 12, 3, 10, 0, tzinfo=timezone.utc)
    quiet = [RollupPoint(start=start + timedelta(minutes=15 * i), succeeded=i) for i in range(96)]
    assert list(views.day_charts(quiet)) == ["Tasks per 15 minutes, last 24 hours"]  # no load sampled: no chart
    sampled = [p.model_copy(update={"load": 0.5, "load_max": 0.75}) for p in quiet]
    charts = views.day_charts(sampled)
    assert len(charts) == 2 and all(len(parse(svg).findall(f"{SVG}circle")) in (96 * 2, 96 * 3)
                                    for svg in charts.values())
    queues = [QueueOverview(queue="a", counts={}, paused=False, workers=3, load=1.0),
              QueueOverview(queue="b", counts={}, paused=False, workers=1, load=0.0),
              QueueOverview(queue="c", counts={}, paused=False, workers=0, load=0.0)]
    assert views.average_load(queues) == pytest.approx(0.75)
    assert views.average_load(queues[2:]) is None
