"""Task ids (#18): 22 base62 characters for a 128-bit UUID; its hex and dashed forms map to them."""

from __future__ import annotations

import collections
import uuid

import pytest

from orchestrator import ids


@pytest.mark.parametrize("value", [0, 1, 61, 62, 3843, 2**64 - 1, 2**64, 62**11, 2**128 - 1])
def test_compact_is_22_alphanumerics_and_reads_back(value: int) -> None:
    text = ids.compact(value)
    assert len(text) == 22 and text.isalnum() and text.isascii()
    assert ids.uuid_hex(text) == f"{value:032x}"


def test_compact_keeps_the_order_of_the_values() -> None:
    values = [0, 5, 62**11 - 1, 62**11, 2**100, 2**128 - 1]
    assert sorted(ids.compact(v) for v in values) == [ids.compact(v) for v in values]


def test_new_ids_are_distinct_and_compact() -> None:
    made = {ids.new_task_id() for _ in range(1000)}
    assert len(made) == 1000 and all(len(i) == 22 and i.isalnum() for i in made)


def test_new_ids_are_the_compact_form_of_a_uniform_128_bit_value() -> None:
    made = [ids.new_task_id() for _ in range(20_000)]
    assert all(ids.compact(int(ids.uuid_hex(i) or "x", 16)) == i for i in made)  # below 2 ** 128, read back
    heads = collections.Counter(i[0] for i in made)
    assert set(heads) == set("01234567")  # 2 ** 128 is 7.9 * 62 ** 21: a leading 7 is rarer than the rest
    for head in "0123456":
        assert abs(heads[head] / len(made) - 62**21 / 2**128) < 0.015
    assert abs(heads["7"] / len(made) - (2**128 - 7 * 62**21) / 2**128) < 0.015
    assert ids.compact(0) <= min(made) and max(made) <= ids.compact(2**128 - 1)


def test_the_forms_of_a_uuid_name_its_compact_id_first_then_the_hex() -> None:
    u = uuid.uuid4()
    compact = ids.compact(u.int)
    assert ids.forms(u.hex) == (compact, u.hex)
    assert ids.forms(u.hex.upper()) == (compact, u.hex)
    assert ids.forms(str(u)) == (compact, u.hex)
    assert ids.forms(compact) == (compact,)


@pytest.mark.parametrize("other", ["s-" + "a" * 32, "order-7", "g" * 32, "a" * 31, "", "a-b-c-d-" + "e" * 28])
def test_other_ids_are_only_themselves(other: str) -> None:
    assert ids.forms(other) == (other,)
    assert ids.uuid_hex(other) is None or len(other) == 22
