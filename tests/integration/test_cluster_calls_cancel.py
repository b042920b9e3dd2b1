"""A batch of calls to several masters that is cancelled (or fails) while one master's
replies are read must not leave the other masters' connections checked out with their
replies unread: each goes back to its node, closed (cluster_calls.arun_many / run_many).

The batch: a BLPOP on one master (read first, its reply 2 s away: the cancel lands there)
and a SET on another, written together; after the cancel, no connection of the second
master's node may still be in use.
"""

from __future__ import annotations

import asyncio

import pytest

from orchestrator import Orchestrator
from orchestrator.keys import QueueKeys
from orchestrator.script_calls import arun_many, command
from tests.integration.test_cluster import spread


def test_a_batch_cancelled_while_one_master_answers_releases_the_others(capp: Orchestrator) -> None:
    first, second = spread(capp.redis, 2)
    blocked, written = QueueKeys(first).wake, QueueKeys(second).base + "cancel-test"

    async def scenario() -> int:
        client = capp.aredis
        try:
            await client.initialize()
            other = client.get_node_from_key(written)  # type: ignore[attr-defined]
            batch = asyncio.create_task(arun_many(client, [command("BLPOP", blocked, 2), command("SET", written, "1")]))
            await asyncio.sleep(0.3)  # both written; the BLPOP's reply is read first and blocks
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await batch
            return len(other._connections) - len(other._free)  # checked out, never released
        finally:
            await capp.aclose()

    assert asyncio.run(scenario()) == 0, "the other master's connection was left checked out, its reply unread"
