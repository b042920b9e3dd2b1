"""The web dashboard of ``orch serve``: server-rendered pages over the operator API.

Owns nothing itself: ``pages`` the routes and what each page reads, ``views`` the shaping
of records for a person, ``charts`` the SVG charts, ``templates/`` (Jinja2) and
``static/`` (one stylesheet, one plain script, an icon: every asset ships in the package,
nothing is fetched from elsewhere). ``install_dashboard`` adds the pages and the static
files to the API's FastAPI app (``create_app`` calls it); ``DASHBOARD_PUBLIC`` is what
needs no credentials (the login form and the static files). Actions are the ``/api/v1``
routes themselves; the pages never change anything.
See ARCHITECTURE.md for the layers.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from .pages import router

LOGIN_PATH = "/login"
STATIC_PATH = "/static"
DASHBOARD_PUBLIC = (LOGIN_PATH, STATIC_PATH + "/")
STATIC_DIR = Path(__file__).resolve().parent / "static"

__all__ = ["DASHBOARD_PUBLIC", "LOGIN_PATH", "install_dashboard"]


def install_dashboard(api: FastAPI) -> None:
    """Add the dashboard's pages and static files to ``api`` (the auth rules stay ``install_auth``'s)."""
    api.include_router(router())
    api.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")
