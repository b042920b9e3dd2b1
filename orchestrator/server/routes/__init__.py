"""The routes of the HTTP API under ``/api/v1``, one module per resource: ``queues``,
``tasks``, ``workers`` and ``events`` (server-sent events). Each module's ``router(read_only)``
builds its ``APIRouter``; with ``read_only`` the mutating routes are not added at all.
See ARCHITECTURE.md for the layers.
"""
