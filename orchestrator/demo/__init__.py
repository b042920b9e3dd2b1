"""``orch demo``: the seeds' story on real processes.

``run`` drives one demo (Redis, processes, producer, the kill, the summary), ``story``
is its pure plan and telling, ``processes`` starts and stops the children, ``tasks``
holds the task functions the demo's workers run.
"""
