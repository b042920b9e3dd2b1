"""read_task and corrupt_queue take a fast path for plainly fine values (_lib.lua): the
answers must be exactly those of the field-by-field rules, whatever the values.

Each is run on a real Redis through a small script built from the library, against a
reference written here from models.py (field_problem, _quote) and is_int's rules, on values
drawn around every edge the fast paths draw (15 and 16 digits, leading zeros, '0', bytes
over 127, NUL, the seq bound).
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.keys import QueueKeys
from orchestrator.models import RECORD, REQUIRED, REQUIRED_FIELDS, _quote, field_problem
from orchestrator.reading import MAX_INT
from orchestrator.script_calls import library

KEYS = QueueKeys("fast")

READ = """
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
local rec, why, bad = read_task(ARGV[4], fields)
if not rec then return {'nil', why} end
local out = {'rec', why or ''}
for _, name in ipairs({unpack(RECORD_REQUIRED)}) do fields[#fields + 1] = name end
for _, name in ipairs(fields) do
  out[#out + 1] = name
  out[#out + 1] = rec[name] == nil and '<nil>' or rec[name]
  out[#out + 1] = bad[name] and '1' or '0'
end
return out
"""

COUNTERS = """
local counters = {}
for i = 4, #ARGV do counters[#counters + 1] = ARGV[i] end
return corrupt_queue({}, KEYS[1], counters) or ''
"""

EDGES = [
    b"", b"0", b"00", b"007", b"5", b"10", b"9" * 12, b"9" * 13, b"9" * 15, b"1" + b"0" * 14, b"9" * 16,
    str(MAX_INT).encode(), str(MAX_INT + 1).encode(), b"-1", b"-0", b"+1", b" 1", b"1 ", b"1e3", b"0x10",
    b"1.0", b"\x00", b"1\x002", b"a\x00b", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"caf\xc3\xa9", b"w1",
    b"RUNNING", b"PENDING", b"bogus", b"[]", b"'q'", b"x" * 50, "\uff11".encode(), b"1" * 17, b"9" * 18,
    str(10**13 - 10**6).encode(), str(10**13 - 10**6 + 1).encode(), b"\x7f", b"\x80", b"\t",
]
VALUES = st.one_of(
    st.sampled_from(EDGES),
    st.text(alphabet="0123456789", max_size=17).map(str.encode),
    st.binary(max_size=8),
)
OPTIONAL = sorted(name for name, (_, default) in RECORD.items() if default is not REQUIRED)


def expected_read(record: dict[str, bytes], fields: list[str]) -> list[Any]:
    """read_task's answer by the field-by-field rules (models.field_problem and _quote)."""
    if not any(name in record for name in REQUIRED_FIELDS):
        return [b"nil", b"no record"]
    problems, rows = [], {}
    for name in [*REQUIRED_FIELDS, *fields]:
        kind, default = RECORD[name]
        value = record.get(name)
        if value is None:
            if default is REQUIRED:
                problems.append(f"field {name} is missing")
                rows[name] = (None, True)
            else:
                rows[name] = (default.encode(), False)
            continue
        problem = field_problem(kind, value)
        if problem is None:
            rows[name] = (value, False)
        else:
            problems.append(f"field {name} {_quote(value)} {problem}")
            rows[name] = (None if default is REQUIRED else default.encode(), True)
    out: list[Any] = [b"rec", "; ".join(problems).encode()]
    for name in [*fields, *REQUIRED_FIELDS]:
        value, bad = rows[name]
        out += [name.encode(), b"<nil>" if value is None else value, b"1" if bad else b"0"]
    return out


GOOD = {"state": b"RUNNING", "id": b"t", "name": b"job", "queue": b"fast"}


def test_read_task_answers_as_the_field_rules_for_every_edge_in_every_field(r: Any) -> None:
    """Each edge value in each field (a good record otherwise), asked for or not."""
    read = library().build(READ)
    key = KEYS.task("t")
    for name in RECORD:
        for value in EDGES:
            record = {**GOOD, name: value}
            r.delete(key)
            r.hset(key, mapping=record)
            asked = [] if name in REQUIRED_FIELDS else [name]
            reply = r.eval(read, 0, KEYS.base, 0, 0, "t", *asked)
            assert reply == expected_read(record, asked), (name, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    required=st.dictionaries(st.sampled_from(REQUIRED_FIELDS), VALUES),
    optional=st.dictionaries(st.sampled_from(OPTIONAL), VALUES),
    asked=st.lists(st.sampled_from(OPTIONAL), unique=True, max_size=10),
    good_state=st.booleans(),
)
def test_read_task_answers_as_the_field_rules(
    r: Any, required: dict[str, bytes], optional: dict[str, bytes], asked: list[str], good_state: bool
) -> None:
    record = {**optional, **required}
    if good_state and "state" in record:
        record["state"] = b"RUNNING"
    key = KEYS.task("t")
    r.delete(key)
    if record:
        r.hset(key, mapping=record)
    reply = r.eval(library().build(READ), 0, KEYS.base, 0, 0, "t", *asked)
    assert reply == expected_read(record, asked)


def is_count(value: bytes, name: str) -> bool:
    """_lib.lua's is_int (and is_uint below PRIORITY_SPAN - 1e6 for seq), in Python."""
    text = value.decode("latin-1")
    if len(text) > 17 or not (text == "0" or re.fullmatch(r"-?[1-9][0-9]*", text)):
        return False
    if abs(int(text)) > MAX_INT:
        return False
    return name != "seq" or (not text.startswith("-") and len(text) <= 16 and int(text) <= 10**13 - 10**6)


def test_corrupt_queue_judges_every_edge_as_is_int(r: Any) -> None:
    check = library().build(COUNTERS)
    for name in ("seq", "runs"):
        for value in EDGES:
            r.delete(KEYS.stats)
            r.hset(KEYS.stats, mapping={name: value, "failed": b"3"})
            reply = r.eval(check, 1, KEYS.stats, KEYS.base, 0, 0, "failed", name)
            bad = f"CORRUPT {KEYS.stats} {name} {_quote(value)} is not a count".encode()
            assert reply == (b"" if is_count(value, name) else bad), (name, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stats=st.dictionaries(st.sampled_from(["seq", "failed", "runs", "malformed"]), VALUES),
    asked=st.lists(st.sampled_from(["seq", "failed", "runs", "malformed"]), unique=True, min_size=1),
)
def test_corrupt_queue_judges_counters_as_is_int(r: Any, stats: dict[str, bytes], asked: list[str]) -> None:
    r.delete(KEYS.stats)
    if stats:
        r.hset(KEYS.stats, mapping=stats)
    reply = r.eval(library().build(COUNTERS), 1, KEYS.stats, KEYS.base, 0, 0, *asked)
    bad = [name for name in asked if name in stats and not is_count(stats[name], name)]
    if bad:
        assert reply == f"CORRUPT {KEYS.stats} {bad[0]} {_quote(stats[bad[0]])} is not a count".encode()
    else:
        assert reply == b""
