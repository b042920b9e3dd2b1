"""``orch demo``: the queue at work, with real processes on a real Redis.

Owns one run of the demo: the Redis it uses (the one given, or a private redis-server it
starts and stops), a scheduler and N worker processes (``python -m orchestrator ...``),
the producer that enqueues numbered demo tasks in waves, the SIGKILL of one busy worker
part way through, the merged log read from the queue's event stream, and the closing
check that no task was lost. All it writes lives under a fresh key prefix and is deleted
at the end; every process it starts is stopped, also on Ctrl-C or SIGTERM.
The plan and the story's text come from ``story`` and ``summary`` (pure), the reads of
Redis from ``reads``, the tasks from ``tasks``, starting and stopping the processes from
``processes``. Does not configure logging; prints only through ``Output``.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit

import redis

from ..client import Orchestrator
from ..config import Settings
from ..connection import sync_client
from ..errors import ConfigurationError, DemoError, OutputClosed
from ..reading import redis_time_ms
from ..redis_local import LocalRedis
from . import tasks as demo_tasks
from .processes import (
    CONCURRENCY,
    HEARTBEAT,
    LEASE,
    QUEUE,
    Child,
    child_env,
    scheduler_command,
    spawn,
    stop_children,
    worker_command,
)
from .reads import delete_prefix, final_states, live_loads, read_events
from .story import Story, plan_tasks, plan_waves, stamp
from .summary import Kill, Outcome, summary_lines

METRICS_EVERY = 2.0  # seconds between [Metrics] lines
SAMPLE_EVERY = 0.5  # seconds between reads of the workers' load
READ_BLOCK_MS = 100  # longest XREAD block: the loop also enqueues, samples and kills
START_TIMEOUT = 15.0  # seconds the processes get to start and register
SHUTDOWN_RESERVE = 2.0  # seconds of --duration kept for stopping the processes and the summary
MIN_DURATION = 5.0


# ---------------------------------------------------------------------------- output


class Output:
    """The demo's only way to print: log lines and, on a terminal, a live progress line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty())
        self.closed = False
        self._progress_shown = False

    def line(self, text: str = "") -> None:
        self._clear()
        self._write(text + "\n")

    def progress(self, text: str) -> None:
        if self.live:
            self._write(f"\r{text}\x1b[K")
            self._progress_shown = True

    def _clear(self) -> None:
        if self._progress_shown:
            self._write("\r\x1b[K")
            self._progress_shown = False

    def _write(self, text: str) -> None:
        if self.closed:
            return
        try:
            try:
                self.stream.write(text)
            except UnicodeEncodeError:
                self.stream.write(text.encode("ascii", "replace").decode("ascii"))
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            with contextlib.suppress(AttributeError, OSError, ValueError):  # no error again at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
            raise OutputClosed from None


def where(url: str) -> str:
    """A Redis URL without its credentials, fit to print."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or 'localhost'}{port}{parts.path}"


# ------------------------------------------------------------------------------ demo


@dataclass(frozen=True)
class DemoConfig:
    workers: int = 3
    tasks: int = 60
    kill: bool = True
    seed: int = 0
    duration: float = 40.0


class Demo:
    """One run: start the processes, enqueue, tell the events, kill a worker, check, summarize."""

    def __init__(
        self, cfg: DemoConfig, out: Output, redis_url: str, prefix: str, log_dir: Path, began: float
    ) -> None:
        self.cfg = cfg
        self.began = began  # time.monotonic() when run_demo was called
        self.deadline = began + cfg.duration - SHUTDOWN_RESERVE
        self.out = out
        self.redis_url = redis_url
        self.prefix = prefix
        self.log_dir = log_dir
        self.client = sync_client(redis_url)
        self.app = Orchestrator(settings=Settings(redis_url=redis_url, prefix=prefix))
        self.app.registry.update(demo_tasks.app.registry)  # the tasks' retry options apply at enqueue
        self.keys = self.app.keys(QUEUE)
        self.queue = self.app.queue(QUEUE)
        self.children: list[Child] = []
        self.names = [f"w-{i}" for i in range(1, cfg.workers + 1)]
        self.planned = plan_tasks(cfg.tasks, cfg.seed)
        self.waves = plan_waves(cfg.tasks)
        self.ids: list[str] = []
        self._wave = 0  # the next wave to enqueue
        self.kill: Kill | None = None
        self.last_id = "0-0"
        self.offset_ms = redis_time_ms(self.client) - time.time() * 1000
        self.story = Story(self.now_ms())
        self.started = time.monotonic()
        self._window: list[float] = []  # average loads sampled since the last [Metrics] line
        self._closed = False

    def now_ms(self) -> float:
        """Redis's clock, the one the event ids carry, without a round trip."""
        return time.time() * 1000 + self.offset_ms

    def say(self, text: str) -> None:
        self.out.line(f"{stamp(self.now_ms(), self.story.t0_ms)} {text}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self, *, report: bool = False) -> None:
        """Stop every process, then remove the demo's keys. Only the first call does anything."""
        if self._closed:
            return
        self._closed = True
        try:
            stop_children(self.children)
            with contextlib.suppress(redis.RedisError):
                removed = delete_prefix(self.client, self.prefix)
                if report:
                    self.out.line(f"Removed the demo's {removed} keys ({self.prefix}:*); nothing else was touched")
        finally:
            self.app.close()
            self.client.close()

    # --------------------------------------------------------------- start

    def start(self) -> None:
        env = child_env(self.redis_url, self.prefix)
        self.children.append(spawn("scheduler", scheduler_command(), env, self.log_dir))
        for name in self.names:
            self.children.append(spawn(name, worker_command(name), env, self.log_dir))
        self._wait_until_registered()
        self.story.t0_ms = self.now_ms()  # time 0 of the log: everything is ready, nothing enqueued yet
        self.started = time.monotonic()
        pids = ", ".join(f"{c.name} pid {c.pid}" for c in self.children)
        self.say(f"[Demo] Started a scheduler and {len(self.names)} workers x {CONCURRENCY} slots ({pids})")
        if self.cfg.kill and len(self.names) < 2:
            self.say("[Demo] Only one worker: it will not be killed (nobody would be left to recover its tasks)")

    def _wait_until_registered(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while len(live_loads(self.queue)) < len(self.names):
            self.check_children()
            if time.monotonic() > deadline:
                tails = "; ".join(f"{c.name}: {c.tail() or 'no output'}" for c in self.children)
                raise DemoError(f"the workers did not register within {START_TIMEOUT:g} s ({tails})")
            self.out.progress(f"starting {len(self.children)} processes...")
            time.sleep(0.05)

    def check_children(self) -> None:
        for child in self.children:
            code = child.proc.poll()
            if code is not None and not child.killed:
                raise DemoError(f"{child.name} exited with code {code}: {child.tail() or 'no output'}")

    # ---------------------------------------------------------------- loop

    def run(self) -> int:
        self.start()
        finished = self.loop()
        return self.finish(finished)

    def loop(self) -> bool:
        """Until every task is final (True) or the time cap is reached (False)."""
        next_sample, next_metrics = 0.0, METRICS_EVERY
        while True:
            self.enqueue_due()
            self.pump(READ_BLOCK_MS)
            if len(self.ids) == self.cfg.tasks and self.story.done == self.cfg.tasks:
                return True
            if time.monotonic() >= self.deadline:
                self.say(f"[Demo] Time cap of {self.cfg.duration:g} s reached; stopping")
                return False
            self.check_children()
            self.maybe_kill()
            if self.elapsed() >= next_sample:
                self.sample()
                next_sample += SAMPLE_EVERY
            if self.elapsed() >= next_metrics:
                self.metrics()
                next_metrics += METRICS_EVERY
            self.out.progress(self.story.progress(self.cfg.tasks, self.elapsed()))

    def enqueue_due(self) -> None:
        """Enqueue the waves whose time has come, one script call each."""
        while self._wave < len(self.waves) and self.waves[self._wave][0] <= self.elapsed():
            count = self.waves[self._wave][1]
            self._wave += 1
            batch = self.planned[len(self.ids) : len(self.ids) + count]
            requests = [self.app.request(t.name, t.args, priority=t.priority, queue=QUEUE) for t in batch]
            handles = self.app.enqueue_many(requests)
            self.ids += [h.id for h in handles]
            self.story.add_tasks(h.id for h in handles)

    def pump(self, block_ms: int | None) -> None:
        """Read the new events and print their lines."""
        events = read_events(self.client, self.keys.events, self.last_id, block_ms)
        if events:
            last = events[-1]
            self.last_id = f"{last.ms}-{last.seq}"
        for line in self.story.lines(events):
            self.out.line(line)

    def sample(self) -> None:
        killed = self.kill.worker if self.kill else None
        loads = {w: v for w, v in live_loads(self.queue).items() if w != killed}
        for worker, load in loads.items():
            self.story.workers[worker].loads.append(load)
        if loads:
            self._window.append(sum(loads.values()) / len(loads))

    def metrics(self) -> None:
        load = sum(self._window) / len(self._window) if self._window else None
        self._window = []
        self.say(self.story.metrics(self.cfg.tasks, load))

    # ---------------------------------------------------------------- kill

    def maybe_kill(self) -> None:
        """Once a third of the tasks are done, SIGKILL the busiest worker (when it runs enough)."""
        if not self.cfg.kill or self.kill is not None or len(self.names) < 2:
            return
        if self.story.done < math.ceil(self.cfg.tasks / 3):
            return
        live = [c for c in self.children if c.name in self.names and not c.killed]
        victim = max(live, key=lambda c: (len(self.story.held[c.name]), c.name))
        running = sorted(self.story.held[victim.name], key=lambda t: int(self.story.number(t)))
        if len(running) < (1 if len(self.ids) == self.cfg.tasks else 2):
            return
        victim.proc.kill()
        victim.proc.wait()
        victim.killed = True
        self.kill = Kill(victim.name, victim.pid, self.now_ms(), len(running))
        numbers = ", ".join(self.story.number(t) for t in running)
        self.say(
            f"[Demo] Killed worker {victim.name} (pid {victim.pid}) with SIGKILL while it ran task"
            f"{'s' if len(running) > 1 else ''} {numbers}; its leases expire within {LEASE:g} s"
        )

    # -------------------------------------------------------------- finish

    def finish(self, finished: bool) -> int:
        if finished:
            self.say(f"[Demo] All {self.cfg.tasks} tasks reached a final state")
        self.metrics()
        self.say("[Demo] Stopping the workers and the scheduler (SIGTERM)")
        stop_children(self.children)
        self.pump(None)
        outcome = Outcome(final_states(self.queue, self.ids))
        self.out.line()
        took = time.monotonic() - self.began
        lines = summary_lines(
            self.story, outcome, self.names, self.kill, planned=self.cfg.tasks, seed=self.cfg.seed, elapsed=took
        )
        for line in lines:
            self.out.line(line)
        return 0 if outcome.ok and len(self.ids) == self.cfg.tasks else 1


# ------------------------------------------------------------------------- signals


class _Signals:
    """While the demo runs, SIGTERM acts like Ctrl-C; once it cleans up, both wait until it is done."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> _Signals:
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            self.saved = {s: signal.getsignal(s) for s in self.SIGNALS}
            signal.signal(signal.SIGTERM, self._interrupt)
        return self

    @staticmethod
    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def shield(self) -> None:
        if self.active:
            for s in self.SIGNALS:
                signal.signal(s, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        if self.active:
            for s, handler in self.saved.items():
                signal.signal(s, handler)


@contextlib.contextmanager
def _redis_for_demo(redis_url: str | None, out: Output) -> Iterator[str]:
    """The URL given, or a private redis-server's, stopped and removed on exit."""
    if redis_url is not None:
        yield redis_url
        return
    with LocalRedis() as server:
        out.line(f"Redis: private redis-server on 127.0.0.1:{server.port} (appendonly yes), stopped at the end")
        yield server.url


def run_demo(
    redis_url: str | None = None,
    *,
    workers: int = 3,
    tasks: int = 60,
    kill: bool = True,
    seed: int | None = None,
    duration: float = 40.0,
    stream: TextIO | None = None,
) -> int:
    """Run the demo; 0 when every task ended SUCCESS, FAILED or CANCELLED, else 1 (130 on Ctrl-C).

    ``redis_url`` None starts a private redis-server; given, the demo touches only keys
    under its own fresh prefix and deletes them at the end.
    """
    if workers < 1 or tasks < 1 or duration < MIN_DURATION:
        raise ConfigurationError(f"the demo needs at least 1 worker, 1 task and {MIN_DURATION:g} s")
    began = time.monotonic()
    out = Output(stream)
    if seed is None:
        seed = random.SystemRandom().randrange(10**6)
    cfg = DemoConfig(workers, tasks, kill, seed, duration)
    prefix = f"orchdemo-{secrets.token_hex(4)}"
    with _Signals() as signals, contextlib.ExitStack() as stack:
        try:
            out.line(
                f"orch demo: {tasks} tasks, {workers} workers x {CONCURRENCY} slots, heartbeat {HEARTBEAT:g} s,"
                f" lease {LEASE:g} s, seed {cfg.seed}"
            )
            url = stack.enter_context(_redis_for_demo(redis_url, out))
            if redis_url is not None:
                out.line(f"Redis: {where(url)}; the demo's keys are under {prefix}: and removed at the end")
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="orch-demo-")))
            demo = Demo(cfg, out, url, prefix, log_dir, began)
            stack.callback(demo.close)
            code = demo.run()
            demo.close(report=redis_url is not None)
            return code
        except KeyboardInterrupt:
            with contextlib.suppress(OutputClosed):
                out.line("[Demo] Interrupted: stopping every process it started and removing its keys")
            return 130
        except OutputClosed:
            return 1
        finally:
            signals.shield()
