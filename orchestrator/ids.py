"""Task ids: a random 128-bit UUID written in 22 base62 characters, and the forms accepted on input.

Owns the id's encoding (``new_task_id``) and which stored ids a given id may name
(``forms``): the 32-hex form of a UUID, or its dashed 36-character form, names the same
task as its 22-character form (``orch inspect``, ``app.handle``, the operator API, the CLI
and the HTTP API take any of them); a task stored under the hex form (enqueued before ids
were compact) is still found by it. Other ids (a schedule tick's ``s-<hex>``) pass as
they are. Does not build keys (``keys.py``) nor look anything up.

Why base62 (0-9, A-Z, a-z): 22 characters, as base64url, where the hex form takes 32, so a
queued task's key, index entry and events cost about 30 bytes less; and, unlike base64url,
no '-' or '_': an id never reads as a command-line option (``orch inspect -x...``), a
double-click selects it whole in a terminal, and it needs no quoting in a shell, a URL or
redis-cli. Base32 (26 lowercase characters) would be case-insensitive but 4 bytes longer
wherever the id is stored.

A new id is drawn as base62 digits directly (``new_task_id``: random bytes through a
translation table, no big-integer arithmetic), about as cheap as ``os.urandom(16).hex()``
and a third of the cost of encoding a random integer, on every enqueue's path; it is the
``compact`` form of a uniformly random 128-bit value all the same.
"""

from __future__ import annotations

import os

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LENGTH = 22  # 62 ** 22 > 2 ** 128
_HEX = frozenset("0123456789abcdefABCDEF")
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # two digits per divmod (62 ** 2 = 3844)
_ELEVEN = 62**11


def compact(value: int) -> str:
    """The 22-character base62 form of a 128-bit integer (leading zeros kept: fixed length)."""
    high, low = divmod(value, _ELEVEN)
    return _eleven(high) + _eleven(low)


def _eleven(v: int) -> str:  # v < 62 ** 11: one digit and five pairs, small-integer divmods
    v, a = divmod(v, 3844)
    v, b = divmod(v, 3844)
    v, c = divmod(v, 3844)
    v, d = divmod(v, 3844)
    v, e = divmod(v, 3844)
    return ALPHABET[v] + _PAIRS[e] + _PAIRS[d] + _PAIRS[c] + _PAIRS[b] + _PAIRS[a]


# new_task_id's tables. ALPHABET is in ASCII order, so two ids compare as their values do.
_HEAD = bytes(ord(ALPHABET[b % 8]) for b in range(256))  # a byte -> a leading digit, 0-7 (256 = 32 * 8)
_DIGIT = bytes(ord(ALPHABET[b % 62]) for b in range(248)) + bytes(8)  # a byte below 248 (4 * 62) -> a digit
_UNEVEN = bytes(range(248, 256))  # bytes dropped: they would make digits 0-7 likelier than the rest
_MAX = compact(2**128 - 1).encode()  # b"7n42DGM5Tflk9n8mt7Fhc7"


def new_task_id() -> str:
    """A new task id: 128 random bits (as ``uuid4`` has 122), 22 characters.

    Exactly ``compact`` of a uniform random integer below 2 ** 128, drawn as digits: a leading
    digit uniform in 0-7 and 21 uniform base62 digits make a value uniform below 8 * 62 ** 21
    (2 ** 128.04); one above 2 ** 128 - 1 (2.6% of draws), or 26 random bytes with more than
    4 dropped (0.1%), is drawn again.
    """
    while True:
        raw = os.urandom(26)
        digits = raw[:1].translate(_HEAD) + raw[1:].translate(_DIGIT, _UNEVEN)
        if len(digits) >= LENGTH and (digits := digits[:LENGTH]) <= _MAX:
            return digits.decode()


def uuid_hex(task_id: str) -> str | None:
    """The 32-hex form of a 22-character id (None when ``task_id`` is not one)."""
    if len(task_id) != LENGTH or not all(c in ALPHABET for c in task_id):
        return None
    value = 0
    for c in task_id:
        value = value * 62 + ALPHABET.index(c)
    return f"{value:032x}" if value < 2**128 else None


def forms(task_id: str) -> tuple[str, ...]:
    """The ids a task given as ``task_id`` may be stored under, the likelier first: a UUID's
    32-hex or dashed form gives its 22-character form, then the hex one as typed; any other
    id gives only itself."""
    dashed = len(task_id) == 36 and task_id[8] == task_id[13] == task_id[18] == task_id[23] == "-"
    plain = task_id.replace("-", "") if dashed else task_id
    if len(plain) != 32 or not _HEX.issuperset(plain):
        return (task_id,)
    return (compact(int(plain, 16)), plain.lower())
