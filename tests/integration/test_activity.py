"""``app.activity(minutes, queues)``: every queue's per-minute series summed in two round
trips (the dashboard's overview charts), equal to adding up ``Queue.series`` by hand."""

from __future__ import annotations

import pytest

from orchestrator import Orchestrator
from orchestrator.errors import ValidationError
from orchestrator.metrics_records import SERIES_FIELDS

from .test_operator import claim, complete, fail


def test_activity_is_the_sum_of_each_queues_series(app: Orchestrator) -> None:
    for queue, n in (("a", 3), ("b", 2)):
        for _ in range(n):
            app.enqueue("m:f", queue=queue)
    complete(app, claim(app, 1, "a")[0])
    fail(app, claim(app, 1, "b")[0])
    summed = app.activity(5)
    by_hand = [app.queue(q).series(5) for q in ("a", "b")]
    assert len(summed) == 5 and [p.minute for p in summed] == [p.minute for p in by_hand[0]]
    for name in SERIES_FIELDS:
        assert sum(getattr(p, name) for p in summed) == sum(getattr(p, name) for s in by_hand for p in s), name
    assert sum(p.enqueued for p in summed) == 5 and sum(p.succeeded for p in summed) == 1
    assert sum(p.failed for p in summed) == 1
    assert app.activity(5, ["a"]) == app.queue("a").series(5)


def test_activity_of_no_queue_is_zeros_and_minutes_are_checked(app: Orchestrator) -> None:
    points = app.activity(3)
    assert len(points) == 3 and all(p.enqueued == 0 and p.load is None for p in points)
    with pytest.raises(ValidationError):
        app.activity(0)
