"""Listing a queue's tasks by state, a page at a time, from a cursor (``Queue.tasks``).

Owns the walk over a state's index (or indexes: ``done`` is done, then cancelled), the
cursor that names where a page stopped (``2/<score>:<id>``; the first index's cursors carry
no prefix), the filter by task name within a budget of entries, and the page limit
(``MAX_PAGE``). Does not decode a record (``records.decode_task``), parse a state name
(``records.parse_state``) or check a limit (``queues``). Reads only: never changes a task.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .models import TaskState
from .reading import text
from .records import TaskInfo, decode_task, make_cursor, read_cursor

if TYPE_CHECKING:
    from .queues import Queue

MAX_PAGE = 1000
SCAN_BUDGET = 10  # a filtered page examines at most this many pages' worth of index entries


class TaskScan:
    """Walks indexes one after the other (``done``: done, then cancelled) from a cursor, keeping
    the tasks that match, within a budget of entries. A cursor names its index by position
    (``2/<score>:<id>``; the first index's cursors carry no prefix)."""

    def __init__(self, queue: Queue, indexes: list[str], states: frozenset[TaskState], name: str | None, limit: int):
        self.queue, self.indexes, self.states, self.name, self.limit = queue, indexes, states, name, limit
        self.found: list[TaskInfo] = []
        self.notes: list[str] = []
        self.cursor: str | None = None
        self.filtered = name is not None

    def run(self, cursor: str | None) -> None:
        budget = self.limit * (SCAN_BUDGET if self.filtered else 1)
        part, position = _read_cursor(cursor, len(self.indexes))
        while part < len(self.indexes):
            ended = False
            while len(self.found) < self.limit and budget > 0:
                n = min(budget, MAX_PAGE, self.limit - len(self.found) if not self.filtered else MAX_PAGE)
                entries = self._entries(self.indexes[part], position, n)
                budget -= len(entries)
                used = self._keep(entries)
                if used < len(entries):  # the page filled up inside this batch: go on from its last task
                    position = entries[used - 1]
                    break
                if len(entries) < n:  # the index ended
                    ended = True
                    break
                position = entries[-1]
            if not ended:
                break
            part, position = part + 1, None
        if part >= len(self.indexes):
            self.cursor = None
        else:
            inner = make_cursor(*position) if position is not None else ""
            self.cursor = f"{part}/{inner}" if part else inner or None

    def _entries(self, index: str, after: tuple[str, float] | None, n: int) -> list[tuple[str, float]]:
        r = self.queue.app.redis
        if after is None:
            start = 0
        else:
            rank: Any = r.zrank(index, after[0])
            if rank is None:  # the task left this index since: go on after its score
                later = f"({after[1]!r}"
                rows: Any = r.zrange(index, later, "+inf", byscore=True, offset=0, num=n, withscores=True)
                return [(text(m), float(s)) for m, s in rows]
            start = int(rank) + 1
        rows = r.zrange(index, start, start + n - 1, withscores=True)
        return [(text(m), float(s)) for m, s in rows]

    def _keep(self, entries: list[tuple[str, float]]) -> int:
        """Add the matching tasks of ``entries`` until the page is full; how many entries it used."""
        pipe = self.queue.app.redis.pipeline(transaction=False)
        for task_id, _ in entries:
            pipe.hgetall(self.queue.keys.task(task_id))
        missing = used = 0
        for (task_id, _), record in zip(entries, pipe.execute(), strict=True):
            if len(self.found) >= self.limit:
                break
            used += 1
            if not record:
                missing += 1
                continue
            info = decode_task(self.queue.name, task_id, record)
            if self.name is not None and info.name != self.name:
                continue
            if info.state is not None and info.state not in self.states:
                continue  # moving, or left there before the index split (orch doctor --repair moves it)
            self.found.append(info)
        if missing:
            self.notes.append(f"{missing} index entr{'y' if missing == 1 else 'ies'} without a task record skipped")
        return used


def _read_cursor(cursor: str | None, parts: int) -> tuple[int, tuple[str, float] | None]:
    """(which index, position in it) of a page's cursor (None: the start)."""
    if not cursor:
        return 0, None
    head, slash, rest = cursor.partition("/")
    if slash and head.isdigit() and 0 < int(head) < parts and ":" not in head:
        return int(head), read_cursor(rest) if rest else None
    return 0, read_cursor(cursor)
