"""Runnable examples and recipes; each module's docstring says how to run it.

A package so that its modules import as ``examples.<name>`` everywhere: in ``orch worker
--app examples.tasks``, in the tests that run each recipe, and under mypy --strict.
"""
