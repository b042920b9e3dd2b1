"""``orch serve`` on a Redis Cluster: the API and /metrics gather the queues of every master."""

from __future__ import annotations

from orchestrator import Orchestrator, Settings
from orchestrator.redis_local import LocalCluster
from tests.integration.test_cluster import spread
from tests.server.conftest import BEARER, TOKENS, Serve


def test_the_api_enqueues_to_and_lists_queues_on_three_masters(serve: Serve, redis_cluster: LocalCluster) -> None:
    redis_cluster.flush()
    app = Orchestrator(settings=Settings(redis_url=redis_cluster.url))
    try:
        queues = spread(app.redis)
        server = serve(env=TOKENS, headers=BEARER, redis_url=redis_cluster.url)
        with server.client() as client:
            assert client.get("/readyz").json() == {"status": "ok"}
            ids = {}
            for queue in queues:
                created = client.post(f"/api/v1/queues/{queue}/tasks", json={"name": "m:f", "args": [queue]})
                assert created.status_code == 201, created.text
                ids[queue] = created.json()["id"]
            listed = {q["queue"]: q for q in client.get("/api/v1/queues").json()["queues"]}
            assert all(listed[q]["counts"]["pending"] == 1 for q in queues), listed
            for queue, task_id in ids.items():
                assert client.get(f"/api/v1/tasks/{task_id}").json()["queue"] == queue  # found on its master
            metrics = client.get("/metrics").text
            assert all(f'queue="{q}"' in metrics for q in queues)
    finally:
        app.close()
