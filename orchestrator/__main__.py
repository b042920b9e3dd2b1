"""``python -m orchestrator`` is ``orch``. See ARCHITECTURE.md for the layers."""

from .cli import main

main()
