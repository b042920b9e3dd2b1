"""Building Redis clients: the one place a redis-py client is made from a URL.

Owns the options every client of orchestrator gets. Today: maintenance notifications
off. redis-py 6+ asks every new connection to enable them (CLIENT MAINT_NOTIFICATIONS, a
Redis Enterprise / Redis 8 feature for moving endpoints); a server without the command
answers with an error that redis-py logs on every new connection. orchestrator needs
nothing from them: a worker or scheduler rides out a dropped connection on its own.
Does not check URLs (``config``) nor choose which Redis to use (callers pass the URL).
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.maint_notifications import MaintNotificationsConfig


def sync_client(url: str) -> Redis:
    """A client of the Redis at ``url`` (connections are made on first use)."""
    return Redis.from_url(url, maint_notifications_config=MaintNotificationsConfig(enabled=False))


def async_client(url: str) -> AsyncRedis:
    """An asyncio client of the Redis at ``url`` (connections are made on first use)."""
    return AsyncRedis.from_url(url, maint_notifications_config=MaintNotificationsConfig(enabled=False))
