"""fakeredis's differences from Redis that the contract suite meets: the reasons of ``fakeredis_limit``.

Owns the text of each known limit; a test marked ``@pytest.mark.fakeredis_limit(REASON)``
must fail on fakeredis (strict xfail, tests/lua/conftest.py), so a fakeredis release that
closes the gap shows up as a failure here. README "On fakeredis" lists every one
(tests/unit/test_fakes.py checks it). Differences the scripts work around are not here:
they are tested like any behaviour, on both backends.
"""

from __future__ import annotations

NO_COMMANDSTATS = "no INFO commandstats nor CONFIG RESETSTAT: the commands a script makes are counted on Redis only"
# Not a fakeredis limit: what a test means nothing for on Redis Cluster (``cluster_skip``).
ONE_SERVER_STATS = "INFO commandstats is per server: the commands a script makes are counted on one Redis"
NO_OBJECT_ENCODING = "no OBJECT ENCODING: a record's compact encoding (listpack) is checked on Redis only"
PCALL_ERROR_TYPE = (
    "redis.pcall's error text is a Python string in Lua, without :find; the scripts read it through tostring"
)
ERROR_TABLE_TEXT = (
    "an error reply raised again with error(e) fails the script without its text: "
    "an ACL or out-of-memory refusal inside a script reads as 'Error running script'"
)

LIMITS = (NO_COMMANDSTATS, NO_OBJECT_ENCODING, PCALL_ERROR_TYPE, ERROR_TABLE_TEXT)
