"""One adapter module per library, run as ``python -m peers PEER ...`` inside that library's venv.

Each module defines the two benchmark jobs (a no-op, and a 10 ms sleep) the library's way,
a ``Producer`` that enqueues them with the library's public API, and ``worker_argv``: the
command a user would type to start a worker. ``_common`` does the rest.
"""
