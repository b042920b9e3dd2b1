"""Settings of the Django recipe: the least a project needs to use the ORM and one view.

The database is an SQLite file in the system's temporary directory unless
``ORDERS_DB`` names another file (the tests give each run its own).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

SECRET_KEY = "django-recipe-not-secret"  # a recipe: a real project reads its own from the environment
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]
INSTALLED_APPS = ["examples.django_app.orders"]
ROOT_URLCONF = "examples.django_app.urls"
MIDDLEWARE: list[str] = []
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("ORDERS_DB") or str(Path(tempfile.gettempdir()) / "orchestrator-django-recipe.sqlite3"),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
