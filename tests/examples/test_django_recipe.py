"""examples/django_app end to end: Django's ORM on SQLite in a temporary directory, the
suite's Redis, a real worker.

A rolled-back transaction enqueues nothing (nor does a rolled-back savepoint inside a
committed one); a committed one enqueues exactly once; the worker's task reads the row
through the ORM and updates it; the view answers 201 and 400.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrator import Orchestrator
from orchestrator.redis_local import LocalRedis
from tests.examples.running import pointed_at, running_worker
from tests.integration.procs import wait_for


class Declined(Exception):
    """What makes the tests' transactions roll back."""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """Django set up once for this process (its settings are global), on a fresh SQLite file;
    yields the recipe's ``worker`` module (its tasks registered)."""
    os.environ["ORDERS_DB"] = str(tmp_path_factory.mktemp("django") / "orders.sqlite3")
    set_here = "DJANGO_SETTINGS_MODULE" not in os.environ
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    from django.core.management import call_command

    from examples.django_app import worker  # django.setup(), then the tasks

    call_command("migrate", run_syncdb=True, verbosity=0)  # the app has no migrations: its table, made here
    yield worker
    del os.environ["ORDERS_DB"]
    if set_here:
        del os.environ["DJANGO_SETTINGS_MODULE"]


@pytest.fixture
def orch(project: ModuleType, app: Orchestrator, redis_server: LocalRedis) -> Iterator[Orchestrator]:
    from examples.django_app.orch import orch as example
    from examples.django_app.orders.models import Order

    Order.objects.all().delete()
    with pointed_at(example, redis_server.url) as pointed:
        yield pointed


def pending(orch: Orchestrator) -> list[Any]:
    from examples.django_app.orch import QUEUE

    return [(t.name, t.args) for t in orch.queue(QUEUE).tasks("pending").tasks]


def test_a_rolled_back_transaction_enqueues_nothing(orch: Orchestrator) -> None:
    from django.db import transaction

    from examples.django_app.orders.models import Order
    from examples.django_app.orders.services import place_order

    with pytest.raises(Declined), transaction.atomic():
        place_order("book", 1)
        raise Declined("payment declined")
    assert Order.objects.count() == 0
    assert pending(orch) == []

    with transaction.atomic():  # the outer transaction commits, the savepoint around the order does not
        with pytest.raises(Declined), transaction.atomic():
            place_order("pen", 1)
            raise Declined("out of stock")
        kept = Order.objects.create(item="kept", quantity=1)
    assert list(Order.objects.values_list("pk", flat=True)) == [kept.pk]
    assert pending(orch) == []


def test_a_committed_transaction_enqueues_once_and_the_task_ships_the_row(orch: Orchestrator) -> None:
    from django.db import transaction

    from examples.django_app.orders.models import Order
    from examples.django_app.orders.services import enqueue_shipping, place_order

    with transaction.atomic():
        order = place_order("book", 2)  # nested in a transaction: enqueued when the outer one commits
        assert pending(orch) == []
    assert pending(orch) == [("orders:ship_order", [order.pk])]
    again = enqueue_shipping(order.pk)  # the callback run twice would find the same task
    assert not again.created and pending(orch) == [("orders:ship_order", [order.pk])]

    with running_worker(orch, "examples.django_app.worker", queues=("orders",)):
        shipped: str = again.result(timeout=10)
    assert shipped == "shipped"
    row = Order.objects.get(pk=order.pk)
    assert (row.status, row.shipped_by) == ("shipped", again.id)


def test_the_view_places_an_order_that_the_worker_ships(orch: Orchestrator) -> None:
    from django.test import Client

    from examples.django_app.orders.models import Order

    client = Client()
    created = client.post("/orders", json.dumps({"item": "lamp", "quantity": 3}), content_type="application/json")
    assert created.status_code == 201
    order_id = created.json()["id"]
    assert created.json() == {"id": order_id, "status": "placed"}
    assert pending(orch) == [("orders:ship_order", [order_id])]
    bad = client.post("/orders", "{}", content_type="application/json")
    assert (bad.status_code, bad.json()) == (400, {"detail": 'send {"item": "...", "quantity": 1}'})
    zero = client.post("/orders", json.dumps({"item": "x", "quantity": 0}), content_type="application/json")
    assert (zero.status_code, zero.json()) == (400, {"detail": "quantity must be at least 1"})
    assert client.get("/orders").status_code == 405

    with running_worker(orch, "examples.django_app.worker", queues=("orders",)):
        wait_for(lambda: Order.objects.get(pk=order_id).status == "shipped", "the worker to ship the order")
    assert Order.objects.count() == 1


def test_the_sqlite_file_is_the_tests_own(project: ModuleType) -> None:
    from django.conf import settings

    assert Path(settings.DATABASES["default"]["NAME"]).name == "orders.sqlite3"
