"""The hostile-Redis fuzzer: spoil a live queue between script calls while a real worker and
scheduler serve it, and check that only what was spoiled is harmed.

Each Hypothesis example is one round: a few corruptions (tests.chaos.hostile) of tasks
and keys, innocent tasks beside them, then: no process exited, every innocent task
SUCCESS, every spoiled one at its expected end (FAILED with the reason, dropped with an
event), `orch doctor` naming what only it can mend and `--repair` mending it, after which
the queue's data is consistent again. The processes live across rounds. Short by default
(under a minute); ``ORCH_FUZZ_EXAMPLES=N`` for more (``scripts/fuzz --minutes N``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from orchestrator import Orchestrator, Settings
from orchestrator.integrity import inspect_known_queues, inspect_queue, repair
from orchestrator.keys import QueueKeys
from orchestrator.redis_local import LocalRedis
from tests.chaos.hostile import (
    BAD_FIELDS,
    BAD_KEYS,
    MAIN,
    RUNNING_FIELDS,
    SPARE,
    Corruption,
    Round,
    apply,
    end_of,
    failure_reason,
    field_corruption,
)
from tests.integration.procs import Proc, Procs, wait_for

EXAMPLES = int(os.environ.get("ORCH_FUZZ_EXAMPLES", "6"))
# scripts/fuzz skips shrinking: a failing round is reported as drawn, at once (shrinking rounds of
# real processes can outlast the test timeout)
PHASES = tuple(p for p in Phase if p is not Phase.shrink or not os.environ.get("ORCH_FUZZ_NO_SHRINK"))
# In the suite the rounds are the same every run (CI stays repeatable); scripts/fuzz sets
# ORCH_FUZZ_EXAMPLES and draws fresh seeds.
DERANDOMIZE = "ORCH_FUZZ_EXAMPLES" not in os.environ

corruptions = st.one_of(
    st.sampled_from(BAD_FIELDS).map(lambda f: field_corruption(*f)),
    st.sampled_from(RUNNING_FIELDS).map(lambda f: field_corruption(*f, kind="running")),
    st.sampled_from([Corruption("wrongtype"), Corruption("deleted"), Corruption("orphan")]),
    st.sampled_from(BAD_KEYS).map(lambda k: Corruption("queue_key", k)),
    st.sampled_from([Corruption("known_queues", ("junk",)), Corruption("known_queues", ("deleted",))]),
)


class Live:
    """The fuzzer's server and processes, shared by every round of the module."""

    def __init__(self, server: LocalRedis, logdir: Path) -> None:
        self.server = server
        self.app = Orchestrator(settings=Settings(redis_url=server.url))
        self.r = redis.Redis.from_url(server.url)
        self.procs = Procs(server.url, logdir)
        self.worker = self.procs.worker("w1", concurrency=4, queues=(MAIN, SPARE), lease=1.0, heartbeat=0.1)
        self.scheduler = self.procs.scheduler(queues=())  # every known queue: the set is fuzzed too

    @property
    def processes(self) -> list[Proc]:
        return [self.worker, self.scheduler]

    def close(self) -> None:
        self.procs.close()
        self.app.close()
        self.r.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with LocalRedis(appendonly=False) as server:
        fuzz = Live(server, tmp_path_factory.mktemp("hostile"))
        try:
            yield fuzz
        finally:
            fuzz.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), phases=PHASES,
          derandomize=DERANDOMIZE)
@given(st.lists(corruptions, min_size=1, max_size=4))
def test_spoiled_data_harms_only_what_was_spoiled(live: Live, spoil: list[Corruption]) -> None:
    app, r = live.app, live.r
    repair(r, "orch", events_maxlen=app.settings.events_maxlen)  # a failed example may have left damage
    plan = Round()
    for corruption in spoil:
        apply(app, r, corruption, plan)
    innocents = [app.enqueue("tests:add", [i, 1], delay=0.1 if i % 2 else None) for i in range(4)]
    for handle in innocents:
        plan.expect[(MAIN, handle.id)] = "SUCCESS"

    if plan.needs_repair:
        wait_for(lambda: _reported(live, plan), "orch doctor to name what was spoiled", 20, alive=live.processes)
        repair(r, "orch", events_maxlen=app.settings.events_maxlen)
    for (queue, task_id), end in plan.expect.items():
        wait_for(lambda q=queue, t=task_id, e=end: reached(r, q, t, e), f"{queue} task {task_id} to end {end}", 30,
                 alive=live.processes)
        if end_of(r, queue, task_id) == "FAILED":
            assert failure_reason(r, queue, task_id).strip(": "), "a spoiled task fails with a reason"
    assert all(p.returncode is None for p in live.processes)
    for proc in live.processes:
        assert "Traceback" not in proc.log(), proc.tail()
    repair(r, "orch", events_maxlen=app.settings.events_maxlen)  # leftovers of this round, then all clean
    assert inspect_known_queues(r, "orch") == []
    assert [f for q in (MAIN, SPARE) for f in inspect_queue(r, QueueKeys(q))] == []


def reached(r: redis.Redis, queue: str, task_id: str, end: str) -> bool:
    now = end_of(r, queue, task_id)
    return now in ("SUCCESS", "FAILED") if end == "final" else now == end


def _reported(live: Live, plan: Round) -> bool:
    """Every orphan and spoiled key of the round is among orch doctor's findings."""
    found = " ".join(f.what for q in (MAIN, SPARE) for f in inspect_queue(live.r, QueueKeys(q)))
    found += " ".join(inspect_known_queues(live.r, "orch"))
    orphans = [t for (q, t), end in plan.expect.items() if q == MAIN and end == "SUCCESS" and _is_orphan(live, t)]
    return all(key in found for key in plan.spoiled_keys) and all(t in found for t in orphans)


def _is_orphan(live: Live, task_id: str) -> bool:
    keys = QueueKeys(MAIN)
    state = live.r.hget(keys.task(task_id), "state")
    return state == b"SCHEDULED" and live.r.zscore(keys.scheduled, task_id) is None
