"""enqueue.lua against hostile input: what it accepts, stores, and refuses untouched.

Producers are untrusted (anyone with the README's producer ACL may call the script with
any arguments, and write any key of a queue), so every refusal here must leave the whole
database byte-for-byte unchanged (``Q.fails``), and what is accepted is stored in one
canonical form. The Python client never sends these values: the calls are built by hand.
"""

from __future__ import annotations

import pytest

from orchestrator.errors import CorruptQueue, ValidationError
from orchestrator.script_calls import Call, run
from orchestrator.transitions import TaskSpec
from tests.lua.test_scripts import MAX_PAYLOAD, Q, spec

FIELDS = TaskSpec._fields
FIRST_TASK = 5  # position of the first task's values in a call's args (base, offset, maxlen, max_payload, n)
NON_CANONICAL = ["1e1", "0x10", " 10", "10 ", "10.0", "010", "+5", "-0", "inf", "nan", "", "1_0", "٣"]
NUMBER_FIELDS = ["priority", "max_retries", "timeout_ms", "backoff_ms", "backoff_max_ms", "jitter", "delay_ms"]


@pytest.fixture
def q(r) -> Q:
    queue = Q(r)
    queue.add(key="held")  # every refusal below must leave an existing queue as it was
    return queue


def enqueue(q: Q, *specs: TaskSpec) -> Call:
    return q.at().enqueue(list(specs) or [spec()], max_payload=MAX_PAYLOAD)


def with_arg(call: Call, position: int, value: object) -> Call:
    args = list(call.args)
    args[position] = value
    return Call(call.script, call.keys, args, call.decode)


def with_field(call: Call, field: str, value: object, task: int = 0) -> Call:
    return with_arg(call, FIRST_TASK + task * len(FIELDS) + FIELDS.index(field), value)


@pytest.mark.parametrize("value", NON_CANONICAL)
@pytest.mark.parametrize("field", NUMBER_FIELDS)
def test_a_number_that_is_not_a_canonical_integer_is_refused(q, field, value):
    call = enqueue(q, spec(key="new"), spec())
    q.fails(ValidationError, with_field(call, field, value, task=1), field)


@pytest.mark.parametrize(
    ("position", "value"),
    [(1, "1e1"), (1, "0x10"), (2, "1e3"), (2, "-0"), (3, "1e6"), (3, "0x100000"), (4, "1e0"), (4, "01"), (4, "")],
    ids=["offset 1e1", "offset 0x10", "maxlen 1e3", "maxlen -0", "max_payload 1e6", "max_payload hex", "n 1e0",
         "n 01", "n empty"],
)
def test_common_and_call_arguments_must_be_canonical_too(q, position, value):
    q.fails(ValidationError, with_arg(enqueue(q), position, value))


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_retries", 1001), ("timeout_ms", 315_360_000_001), ("delay_ms", 2**53), ("backoff_ms", 10**16),
     ("jitter", 2), ("priority", 10)],
)
def test_numbers_out_of_range_are_refused(q, field, value):
    q.fails(ValidationError, with_field(enqueue(q), field, value), field)


@pytest.mark.parametrize("field", ["key", "unique_key"])
def test_an_idempotency_key_over_1024_bytes_is_refused(q, r, field):
    q.fails(ValidationError, enqueue(q, spec(**{field: "é" * 513})), "1024 bytes")
    [task_id] = q.add(**{field: "é" * 256})  # the client's longest: 256 characters
    assert r.hget(q.keys.task(task_id), field) == ("é" * 256).encode()


def test_accepted_numbers_are_stored_as_sent(q, r):
    [task_id] = q.add(max_retries=1000, timeout_ms=315_360_000_000, backoff_ms=0, priority=0, jitter=True)
    record = {k.decode(): v.decode() for k, v in r.hgetall(q.keys.task(task_id)).items()}
    assert (record["max_retries"], record["timeout_ms"], record["backoff_ms"]) == ("1000", "315360000000", "0")
    assert record["priority"] == "0"
    assert "jitter" not in record  # at its default (models.RECORD): left out


def test_a_record_leaves_its_default_fields_out_and_reads_them_back(q, r):
    """#18: a queued task's record holds what differs from models.RECORD's defaults only."""
    [plain] = q.add(timeout_ms=300_000, backoff_max_ms=300_000, jitter=True)  # the defaults (spec's are not)
    [odd] = q.add(priority=1, max_retries=0, timeout_ms=5, backoff_ms=7, backoff_max_ms=9, jitter=False)
    record = {k.decode(): v.decode() for k, v in r.hgetall(q.keys.task(plain)).items()}
    assert set(record) == {"name", "state", "created_at", "score"}  # id and queue: its key's
    assert (q.task(plain).id, q.task(plain).queue) == (plain, q.keys.queue)
    task = q.task(plain)
    assert (task.priority, task.args, task.kwargs, task.attempts, task.max_retries, task.timeout_ms) == (
        5, [], {}, 0, 3, 300_000)
    assert (task.backoff_ms, task.backoff_max_ms, task.jitter) == (1_000, 300_000, True)
    assert task.run_at == task.ready_at == task.created_at == int(record["created_at"])
    record = {k.decode(): v.decode() for k, v in r.hgetall(q.keys.task(odd)).items()}
    assert {k: record[k] for k in ("priority", "max_retries", "timeout_ms", "backoff_ms", "backoff_max_ms",
                                   "jitter")} == {"priority": "1", "max_retries": "0", "timeout_ms": "5",
                                                  "backoff_ms": "7", "backoff_max_ms": "9", "jitter": "0"}


def test_a_wrong_number_of_keys_is_refused(q):
    call = enqueue(q)
    q.fails(ValidationError, Call(call.script, call.keys[:4], call.args, call.decode), "KEYS")
    q.fails(ValidationError, Call(call.script, [*call.keys, q.keys.running], call.args, call.decode), "KEYS")


BAD_COUNTERS = [(c, v) for c in ("seq", "enqueued") for v in ("abc", "1e3", "-1", "0x10", "9007199254740992")]


@pytest.mark.parametrize(("counter", "value"), [*BAD_COUNTERS, ("seq", "9999999999999")])  # past a priority's span
def test_a_bad_counter_refuses_before_the_key_is_taken(q, r, counter, value):
    """Seen on main: enqueue wrote unique:<key> and then died in HINCRBY on stats.seq."""
    r.hset(q.keys.stats, counter, value)
    exc = q.fails(CorruptQueue, enqueue(q, spec(key="fresh"), spec()), counter)
    assert exc.code == "CORRUPT" and q.keys.stats in str(exc)
    assert not r.exists(q.keys.unique("fresh"))


@pytest.mark.parametrize(
    ("index", "write"),
    [
        ("pending", lambda r, key: r.set(key, "x")),
        ("scheduled", lambda r, key: r.hset(key, "a", "1")),
        ("stats", lambda r, key: r.rpush(key, "1")),
        ("events", lambda r, key: r.sadd(key, "x")),
        ("wake", lambda r, key: r.set(key, "1")),
    ],
)
def test_a_queue_key_of_the_wrong_type_is_refused(q, r, index, write):
    key = getattr(q.keys, index)
    r.delete(key)
    write(r, key)
    exc = q.fails(CorruptQueue, enqueue(q, spec(key="fresh"), spec(delay_ms=5000)), "not a")
    assert key in str(exc)


@pytest.mark.parametrize("option", ["key", "unique_key"])
def test_an_idempotency_entry_that_is_not_a_string_is_taken_over(q, r, option):
    entry = (q.keys.idempotency if option == "key" else q.keys.unique)("k")
    r.hset(entry, "x", "1")
    [task_id] = q.add(**{option: "k"})
    assert r.get(entry) == task_id.encode()


def test_a_unique_entry_naming_a_record_that_is_not_a_hash_is_taken_over(q, r):
    r.set(q.keys.task("bogus"), "not a hash")
    r.set(q.keys.unique("k"), "bogus")
    call = q.at().enqueue([spec("t1", unique_key="k")], max_payload=MAX_PAYLOAD)
    assert [(e.id, e.created) for e in run(r, call)] == [("t1", True)]  # not q.run: "bogus" is no hash
    assert r.get(q.keys.unique("k")) == b"t1"


def test_an_error_quotes_a_hostile_value_short_and_printable(q):
    exc = q.fails(ValidationError, with_field(enqueue(q), "priority", "1\r\nEVIL" + "x" * 100))
    assert "\n" not in str(exc) and "EVIL" in str(exc) and len(str(exc)) < 80
