"""``python -m orchestrator`` is ``orch``."""

from .cli import main

main()
