"""The recipe's task: reads its order through the ORM and marks it shipped.

Tasks that use the ORM are plain ``def`` functions (Django's ORM is synchronous): the
worker runs them in its thread pool. Django opens one database connection per thread
and closes stale ones only around its own requests, so each task does the same with
``close_old_connections`` (needed with a server database: PostgreSQL, MySQL).
"""

from __future__ import annotations

from django.db import close_old_connections, transaction

from orchestrator.context import current_task

from ..orch import QUEUE, orch
from .models import Order


@orch.task(name="orders:ship_order", queue=QUEUE, max_retries=3)
def ship_order(order_id: int) -> str:
    """Mark the order shipped; the task's result is the order's new status."""
    close_old_connections()
    try:
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=order_id)  # DoesNotExist: retried, then failed
            if order.status != "shipped":  # at least once: a second run of the same task changes nothing
                task = current_task()
                order.status, order.shipped_by = "shipped", task.id if task is not None else ""
                order.save(update_fields=["status", "shipped_by"])
        return order.status
    finally:
        close_old_connections()
