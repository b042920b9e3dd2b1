"""One model: an order, which the ``ship_order`` task marks shipped."""

from __future__ import annotations

from django.db import models


class Order(models.Model):
    # The annotations are for mypy (django-stubs without its plugin): [value set, value read]
    item: models.CharField[str, str] = models.CharField(max_length=100)
    quantity: models.PositiveIntegerField[int, int] = models.PositiveIntegerField()
    status: models.CharField[str, str] = models.CharField(max_length=20, default="placed")  # -> shipped (the task)
    shipped_by: models.CharField[str, str] = models.CharField(max_length=64, blank=True, default="")  # the task's id

    class Meta:
        app_label = "orders"

    def __str__(self) -> str:
        return f"order {self.pk}: {self.quantity} x {self.item}, {self.status}"
