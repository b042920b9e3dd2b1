"""Each script's source holds the library definitions it uses, and only those (luasource.py).

The whole tests/lua suite runs the built scripts on every path it covers; this file checks
the building itself: the split is lossless, every library name a built script mentions is
defined in it, Redis loads each one under its SHA, and a helper a script does not call is
left out.
"""

from __future__ import annotations

import re
from importlib import resources

import pytest
from redis.exceptions import ResponseError

from orchestrator.luasource import code_only, literals, parse, references
from orchestrator.script_calls import _RECORD_LUA, SCRIPT_NAMES, build, library, script

LUA = resources.files("orchestrator").joinpath("lua")
LIB = LUA.joinpath("_lib.lua").read_text()


def defined(source: str) -> set[str]:
    """The top-level names ``source`` defines, read straight from its lines."""
    code = code_only(source)
    names = set(re.findall(r"^local\s+function\s+(\w+)", code, re.MULTILINE))
    for group in re.findall(r"^local\s+(\w+(?:\s*,\s*\w+)*)\s*=", code, re.MULTILINE):
        names |= {n.strip() for n in group.split(",")}
    return names


def test_the_split_concatenates_back_to_the_library() -> None:
    for text in (f"{_RECORD_LUA}\n", f"{LIB}\n"):
        lib = parse(text)
        assert lib.prelude + "".join(d.text for d in lib.definitions) == text
    names = [n for d in library().definitions for n in d.names]
    assert {"RECORD_KIND", "MAX_INT", "BASE", "is_int", "read_task", "corrupt_queue"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_library_name_a_built_script_mentions_is_defined_in_it(name: str) -> None:
    source = script(name).source
    lib_names = {n for d in library().definitions for n in d.names}
    assert references(source) & lib_names <= defined(source)
    assert source.endswith(LUA.joinpath(f"{name}.lua").read_text())  # the body, contract header first
    assert "Shared helpers, prepended to every script" in source  # the library's own header stays


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_redis_loads_every_built_script_under_its_sha(name: str, r) -> None:
    assert r.script_load(script(name).source) == script(name).sha


def test_a_script_that_calls_no_helper_of_a_kind_does_not_carry_it() -> None:
    heartbeat, complete = script("heartbeat").source, script("complete").source
    assert "local function retire(" in complete
    assert "local function retire(" not in heartbeat
    assert "local function settle_failure(" not in heartbeat
    assert "local function settle_failure(" in script("fail").source
    assert "local function read_task(" not in script("enqueue").source
    assert "local RECORD_KIND" not in script("enqueue").source
    assert len(heartbeat) < len(f"{_RECORD_LUA}\n{LIB}\n")


def test_what_a_body_uses_comes_with_what_it_uses_in_library_order() -> None:
    lib = library()
    kept = [d.names[0] for d in lib.needed_by("release_unique('7')")]
    assert kept == ["call_typed", "BASE", "task_key", "own_entry", "release_unique"]


def test_comments_strings_and_fields_name_no_helper() -> None:
    body = "-- retire(x)\n--[[ emit(k) ]]\nlocal s = 'quote(v)' .. [[int(1)]]\nreturn f.is_utf8, s:now_ms()"
    assert library().needed_by(body) == []
    assert [d.names[0] for d in library().needed_by("return 'a' .. int(1)")] == ["int"]


def test_a_library_of_a_shape_the_builder_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match="top-level code inside"):
        parse("local function f()\n  return 1\nend\nredis.call('SET', 'k', 'v')\n")
    with pytest.raises(ValueError, match="close with 'end'"):
        parse("local function f() return 1 end\n")
    with pytest.raises(ValueError, match="before the first definition"):
        parse("math.randomseed(1)\nlocal X = 1\n")


def test_a_script_carries_the_record_schema_of_the_fields_it_names_only(r) -> None:
    """script_calls.build cuts RECORD_KIND and RECORD_DEFAULT down to the fields a script
    names in a string literal (and the required ones); read_task of a field left out fails
    the script loudly instead of reading it unchecked."""
    heartbeat = script("heartbeat").source
    kinds = re.search(r"local RECORD_KIND = \{(.*)\}", heartbeat)
    assert kinds is not None
    named = set(re.findall(r"(\w+) = '", kinds.group(1)))
    assert {"state", "name", "token", "cancel_requested"} <= named
    assert "args" not in named and "backoff_ms" not in named
    assert literals("x = 'a' -- 'b'\ny = \"c\" .. [[d]]") == {"a", "c"}
    body = "return read_task(ARGV[4], {ARGV[5]})"
    source = build(body)
    with pytest.raises(ResponseError, match="no field timeout_ms in RECORD_KIND"):
        r.eval(source, 0, "orch:{q}:", 0, 0, "t", "timeout_ms")
    assert "timeout_ms = 'int'" in build("return read_task(ARGV[4], {'timeout_ms'})")
