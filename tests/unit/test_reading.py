"""reading.py: values read back from Redis never raise, whatever a hand-written record holds."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from orchestrator.models import FailMode
from orchestrator.reading import iso, ms_to_datetime, text, to_float, to_int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"42", 42), ("-3", -3), (7, 7), ("0", 0), (b"1e3", None), ("0x10", None), ("abc", None), ("", None),
     (None, None), (True, None), ("4.5", None), (b"\xff", None), ("\u0663", None), ("007", None), (" 4", None),
     ("-0", None), ("9007199254740991", 2**53 - 1), ("9007199254740992", None), (2**53, None)],
)
def test_to_int_takes_only_canonical_integers(raw, expected):
    assert to_int(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"0.25", 0.25), ("3", 3.0), (2, 2.0), (float("inf"), None), ("nan", None), ("-inf", None),
     ("abc", None), (None, None), (False, None), (b"\xff", None)],
)
def test_to_float_takes_only_finite_numbers(raw, expected):
    assert to_float(raw) == expected


def test_times_are_utc_and_out_of_range_is_none():
    moment = ms_to_datetime(b"1700000000123")
    assert moment == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=timezone.utc)
    assert iso(moment) == "2023-11-14T22:13:20.123Z"
    for bad in ("abc", float("inf"), -1, 10**20, None, ""):
        assert ms_to_datetime(bad) is None
    assert iso(None) is None


def test_text_never_raises():
    assert text(b"caf\xc3\xa9") == "café"
    assert text(b"\xff\xfe") == "\ufffd\ufffd"
    assert text("x") == "x" and text(7) == "7"


def test_fail_modes_are_the_scripts_words():
    assert [m.value for m in FailMode] == ["retry", "fatal", "cancelled"]

