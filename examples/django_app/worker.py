"""What ``orch worker --app examples.django_app.worker`` imports: Django, then the tasks.

A task that uses the ORM needs Django set up in the worker process before its module
(which imports the models) is imported; this module does both, in that order.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
django.setup()

from .orch import orch  # noqa: E402  # what the worker reads the registered tasks from
from .orders import tasks  # noqa: E402  # registers the tasks: only once Django is set up

__all__ = ["orch", "tasks"]
