"""``orch serve``: the HTTP face of the operator API (REST API, ``/metrics``, auth).

Owns nothing itself: each module of this package says what it owns. Kept tiny on
purpose; import from the modules (``orchestrator.server.auth``, ...).
See ARCHITECTURE.md for the layers.
"""
