"""``orch demo``: the seeds' story on real processes.

``run`` drives one demo (Redis, processes, producer, the kill), ``story`` is its pure
plan and telling, ``summary`` the closing check and table (pure), ``reads`` what it reads
from Redis directly, ``processes`` starts and stops the children, ``tasks`` holds the
task functions the demo's workers run. See ARCHITECTURE.md for the layers.
"""
