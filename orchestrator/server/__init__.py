"""``orch serve``: the HTTP face of the operator API (REST under ``/api/v1``, server-sent
events, ``/metrics``, auth); it neither builds keys nor calls scripts.

Owns nothing itself: each module of this package says what it owns. ``create_app``
(``app``) builds the ASGI application, ``auth`` decides who may call it, ``run`` serves it
with uvicorn. Needs the ``server`` extra (``pip install 'orchestrator-queue[server]'``).
See ARCHITECTURE.md for the layers.
"""

from .app import create_app

__all__ = ["create_app"]
