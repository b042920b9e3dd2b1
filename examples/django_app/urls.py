"""The recipe's one route: ``POST /orders`` (``orders.views.create_order``)."""

from __future__ import annotations

from django.urls import path

from .orders import views

urlpatterns = [path("orders", views.create_order)]
