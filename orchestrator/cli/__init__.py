"""The command line ``orch``: the only package that prints or configures logging.

``commands`` holds the click group and one function per command, ``options`` how each
option is parsed and bound to its setting, ``views`` how queue state becomes text.
See ARCHITECTURE.md for the layers.
"""

from .commands import main, orch

__all__ = ["main", "orch"]
