"""The command line ``orch``: the only package that prints or configures logging.

``commands`` holds the click group and one function per command, ``services`` the
commands that run workers and schedulers and check on them (registered on import below),
``options`` how each option is parsed and bound to its setting, ``views`` how queue state
becomes text.
See ARCHITECTURE.md for the layers.
"""

from . import services  # noqa: F401  # registers worker, scheduler, reaper, doctor on `orch`
from .commands import main, orch

__all__ = ["main", "orch"]
