"""Loading ``--app`` modules: the working directory must not stand in for our dependencies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
from orchestrator.worker.registry import load_apps
functions = load_apps(["planted_tasks"])
try:
    import uvloop
    where = uvloop.__file__
except ImportError:
    where = "absent"
print(sorted(functions), where, sys.path.index(sys.argv[1]) > 0)
"""


def test_a_uvloop_py_in_the_working_directory_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "planted-ran"
    (tmp_path / "uvloop.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "planted_tasks.py").write_text(
        "from orchestrator import Orchestrator\napp = Orchestrator()\n\n"
        "@app.task(name='planted:job')\ndef job():\n    pass\n"
    )
    # -P: no script directory on sys.path, as for the `orch` console script
    out = subprocess.run(
        [sys.executable, "-P", "-c", PROBE, str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    names, where, behind = out.stdout.split()
    assert names == "['planted:job']"  # the --app module of the working directory imports
    assert not marker.exists()  # the planted uvloop.py did not run
    assert not where.startswith(str(tmp_path))
    assert behind == "True"  # the directory joined sys.path behind what was there
