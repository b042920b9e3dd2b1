"""``POST /orders`` (JSON ``{"item": ..., "quantity": ...}``): places an order, 201 with its id."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_POST

from .services import place_order


@require_POST
def create_order(request: HttpRequest) -> HttpResponse:
    try:
        body = json.loads(request.body)
        item, quantity = str(body["item"]), int(body["quantity"])
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"detail": 'send {"item": "...", "quantity": 1}'}, status=400)
    if quantity < 1:
        return JsonResponse({"detail": "quantity must be at least 1"}, status=400)
    order = place_order(item, quantity)
    return JsonResponse({"id": order.pk, "status": order.status}, status=201)
