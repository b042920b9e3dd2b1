"""The Lua constructs the scripts rely on, each on its own, on both backends.

The scripts' behaviour is tested through them everywhere else in tests/lua; this file pins
the few constructs where fakeredis's Lua (lupa) was found to differ from Redis's, so the
difference is named where it is (``tests/lua/limits.py``) and the scripts' way around it
is proven on both. These are scratch EVALs of a line or two, not project scripts.
"""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from tests.lua.limits import ERROR_TABLE_TEXT, PCALL_ERROR_TYPE

PCALL = "local e = redis.pcall('HGET', KEYS[1], 'f') "


@pytest.fixture
def wrong_type(r) -> str:
    r.set("s", "a string, not a hash")
    return "s"


def test_a_pcall_error_is_read_through_tostring(r, wrong_type) -> None:
    """call_typed and enqueue's counter read the error as ``tostring(e.err):find(...)``."""
    found = r.eval(PCALL + "return tostring(e.err):find('WRONGTYPE', 1, true) ~= nil and 1 or 0", 1, wrong_type)
    assert found == 1


@pytest.mark.fakeredis_limit(PCALL_ERROR_TYPE)
def test_a_pcall_error_text_is_a_lua_string(r, wrong_type) -> None:
    assert r.eval(PCALL + "return type(e.err)", 1, wrong_type) == b"string"


@pytest.mark.fakeredis_limit(ERROR_TABLE_TEXT)
def test_an_error_table_raised_again_keeps_its_text(r, wrong_type) -> None:
    """call_typed and enqueue's counter raise any other error (ACL, OOM) again with error(e)."""
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        r.eval(PCALL + "error(e)", 1, wrong_type)
