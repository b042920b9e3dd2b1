"""Fencing a task's side effects with its lease token.

Delivery is at least once. A worker that stalls past its lease (a long GC pause, a
network cut, SIGSTOP) may wake up and carry on with a task that the reaper has already
handed to another worker. Orchestrator drops the stale attempt's *result* (its complete
is refused: "lease lost"), but it cannot undo what the task already wrote elsewhere.

Fence those writes. Every claim issues a lease token, and within one queue tokens only
grow. Store the token beside the data and refuse a write that carries an older token
than the one stored: a stale attempt can no longer overwrite a newer attempt's work.

Here the store is an SQLite row, and the check and the write are one statement
(``... DO UPDATE ... WHERE balances.token <= excluded.token``), so no race can slip
between them. The same attempt may write its row again (its token equals the stored
one); an older attempt may not. Tokens compare only within one queue: keep every
task that writes a given row in the same queue. They come from a counter in the
queue's stats hash, so they never go back as long as Redis keeps its data (run it with
appendonly yes); a Redis that lost everything starts again at 1, and the rows written
before refuse every write until their tokens are reset.

Run the demonstration (no Redis needed):

    python examples/fencing.py

Or run the task in a worker (from the repository's root), and enqueue it from anywhere:

    orch worker --app examples.fencing
    python -c 'from orchestrator import Orchestrator; \
        Orchestrator().enqueue("examples.fencing:set_balance", ["/tmp/bank.db", "alice", 100])'
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from orchestrator import Orchestrator
from orchestrator.context import current_task

app = Orchestrator()

SCHEMA = """
CREATE TABLE IF NOT EXISTS balances (
    account TEXT PRIMARY KEY,
    amount  INTEGER NOT NULL,
    token   INTEGER NOT NULL   -- lease token of the attempt that wrote this row
)
"""
FENCED_UPSERT = """
INSERT INTO balances (account, amount, token) VALUES (?, ?, ?)
ON CONFLICT (account) DO UPDATE SET amount = excluded.amount, token = excluded.token
WHERE balances.token <= excluded.token
"""


class StaleAttempt(Exception):
    """A newer attempt (a higher lease token) has already written this row."""


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=10)
    db.execute(SCHEMA)
    return db


def fenced_write(db: sqlite3.Connection, account: str, amount: int, token: int) -> None:
    """Write ``amount`` for ``account`` unless a higher token already wrote it."""
    with db:  # one transaction: the check and the write are one statement
        written = db.execute(FENCED_UPSERT, (account, amount, token)).rowcount
    if written == 0:
        stored = db.execute("SELECT token FROM balances WHERE account = ?", (account,)).fetchone()[0]
        raise StaleAttempt(f"refused: {account!r} was written with token {stored}, this attempt holds {token}")


def read(db: sqlite3.Connection, account: str) -> tuple[int, int] | None:
    """(amount, token) of ``account``, or None."""
    row = db.execute("SELECT amount, token FROM balances WHERE account = ?", (account,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]))


@app.task(name="examples.fencing:set_balance", max_retries=3)
def set_balance(db_path: str, account: str, amount: int) -> int:
    """Set an account's balance, fenced by this attempt's lease token; returns the token."""
    ctx = current_task()
    if ctx is None:
        raise RuntimeError("set_balance fences its write with the lease token: run it in an orch worker")
    token = int(ctx.token)  # a decimal string in the context; compare it as a number
    db = connect(db_path)
    try:
        fenced_write(db, account, amount, token)
    finally:
        db.close()
    return token


def demo() -> None:
    """Two attempts of one task race: attempt 1 (token 7) stalls past its lease, the task is
    claimed again (token 9) and writes; then attempt 1 wakes up and tries to write."""
    with tempfile.TemporaryDirectory() as where:
        db = connect(str(Path(where) / "bank.db"))
        fenced_write(db, "alice", 100, token=9)
        print("attempt 2 (token 9) wrote alice = 100")
        try:
            fenced_write(db, "alice", 50, token=7)
            print("attempt 1 (token 7) wrote alice = 50: NOT fenced")
        except StaleAttempt as exc:
            print(f"attempt 1 (token 7) {exc}")
        print(f"alice = (amount, token) {read(db, 'alice')}")
        db.close()


if __name__ == "__main__":
    demo()
