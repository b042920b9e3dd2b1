"""The package's version, in a module of its own so any layer can read it.

Owns ``__version__`` (kept equal to ``project.version`` in pyproject.toml; a test checks).
The package re-exports it; the worker's heartbeat record and ``orch --version`` show it.
See ARCHITECTURE.md for the layers.
"""

__version__ = "0.1.0"
