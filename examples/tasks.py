"""Example tasks for trying orchestrator by hand (see the README's "Try it by hand").

    orch worker --app examples.tasks --concurrency 4
"""

from __future__ import annotations

import asyncio
import random
import time

from orchestrator import Orchestrator

app = Orchestrator()  # ORCH_REDIS_URL, else redis://localhost:6379/0


@app.task(name="examples:resize", priority=5, max_retries=3, timeout=30)
def resize(path: str, width: int) -> str:
    """Pretend to resize an image: a few seconds of work."""
    time.sleep(random.uniform(1.0, 3.0))
    return f"{path}@{width}"


@app.task(name="examples:fetch", queue="default", backoff=0.5)
async def fetch(url: str) -> int:
    """Pretend to fetch a URL; fails now and then, so retries show."""
    await asyncio.sleep(random.uniform(0.1, 0.5))
    if random.random() < 0.2:
        raise ConnectionError(f"could not reach {url}")
    return len(url)
