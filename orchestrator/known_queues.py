"""Reading the set of known queues (``<prefix>:queues``), which anyone with write access can spoil.

Owns turning that set into queue names every reader can use: the scheduler without
``-q``, ``orch status``, ``orch doctor``, looking a task up by id. An entry that is not
UTF-8 or not a valid queue name is skipped and reported (escaped, fit to log), never
raised: one bad entry must not stop the other queues being served. A ``<prefix>:queues``
that is not a set reads as no queue, with the problem reported. Does not write the set:
producers add to it beside each enqueue (``client``), ``orch doctor --repair`` rebuilds it.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ResponseError

from .errors import InvalidQueueName
from .keys import queues_key, validate_stored_name
from .sanitize import escape


@dataclass(frozen=True)
class KnownQueues:
    """The valid queue names, sorted, and what had to be left out."""

    names: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # bad entries, escaped
    problem: str | None = None  # the set itself could not be read (wrong type)

    @property
    def complaints(self) -> list[str]:
        """One line per problem, fit to log."""
        out = [self.problem] if self.problem else []
        if self.skipped:
            out.append(f"skipped {len(self.skipped)} invalid queue name(s) in the set: {', '.join(self.skipped)}")
        return out


def parse_members(members: Iterable[bytes | str]) -> KnownQueues:
    """Split raw members of the known-queues set into valid names and skipped entries."""
    names, skipped = [], []
    for raw in members:
        try:
            text = raw.decode() if isinstance(raw, bytes) else raw
            names.append(validate_stored_name(text))
        except (UnicodeDecodeError, InvalidQueueName):
            skipped.append(f"'{escape(raw)}'")
    return KnownQueues(sorted(names), sorted(skipped))


def _wrong_type(key: str, exc: ResponseError) -> KnownQueues:
    if not str(exc).startswith("WRONGTYPE"):
        raise exc
    return KnownQueues(problem=f"{key} is not a set (WRONGTYPE): no queue can be listed; `orch doctor --repair`")


def known_queues(client: Redis, prefix: str) -> KnownQueues:
    key = queues_key(prefix)
    try:
        return parse_members(client.smembers(key))
    except ResponseError as exc:
        return _wrong_type(key, exc)


async def aknown_queues(client: AsyncRedis, prefix: str) -> KnownQueues:
    key = queues_key(prefix)
    try:
        return parse_members(await client.smembers(key))
    except ResponseError as exc:
        return _wrong_type(key, exc)
