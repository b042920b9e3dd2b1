"""Placing an order: the row is written, and the task enqueued once the row is committed.

Enqueue in ``transaction.on_commit``, never inside the transaction: a task enqueued
before the commit can run before the row exists (the worker reads an older snapshot),
and one enqueued in a transaction that then rolls back ships an order that was never
placed. ``on_commit`` runs the enqueue only if, and once, the outermost transaction
commits; a rollback drops it. The idempotency ``key`` makes the enqueue itself
exactly-once should the callback ever run twice.
"""

from __future__ import annotations

from django.db import transaction

from orchestrator import TaskHandle

from .models import Order
from .tasks import ship_order


def place_order(item: str, quantity: int) -> Order:
    with transaction.atomic():
        order = Order.objects.create(item=item, quantity=quantity)
        transaction.on_commit(lambda: enqueue_shipping(order.pk))
    return order


def enqueue_shipping(order_id: int) -> TaskHandle[str]:
    """The order's shipping task (enqueued by the first call; later calls return that task)."""
    return ship_order.enqueue([order_id], key=f"ship-order-{order_id}")
