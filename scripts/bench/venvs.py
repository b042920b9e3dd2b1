"""Where each benchmark row's Python comes from: the peers' venvs and the baseline's.

Owns installing each peer into ``.venvs/<peer>`` from its pinned requirements file, and,
for ``scripts/bench/run --baseline REV``, another commit's orchestrator: REV's tree exported
with ``git archive`` to ``.baseline/<sha>/src`` (read-only on the repository: no worktree
to register or prune) and installed, non-editable, into ``.baseline/<sha>/venv`` with the
same dependency versions as the project's .venv, so the two orchestrator rows differ only
in orchestrator's code. The harness (``peers/``) always comes from the current checkout.
Does not run or measure anything (``driver.py`` does). Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent.parent
VENVS = BENCH / ".venvs"
BASELINES = BENCH / ".baseline"
REQUIREMENTS = BENCH / "requirements"
PIP = ("-m", "pip", "install", "-q", "--disable-pip-version-check")


def base_python() -> str:
    return os.environ.get("BENCH_PYTHON") or getattr(sys, "_base_executable", None) or sys.executable


def peer_python(library: str) -> Path:
    """The python of a peer's row; orchestrator's current rows run in the project's .venv (this one)."""
    return Path(sys.executable) if library == "orchestrator" else VENVS / library / "bin" / "python"


def run_steps(steps: list[list[str]], cwd: Path | None = None) -> str | None:
    """Run each command in turn; None when all succeed, else the first failure's most telling line."""
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and "WARNING" not in ln]
            reason = next((ln for ln in reversed(lines) if "ERROR" in ln or "fatal" in ln),
                          lines[-1] if lines else f"{Path(argv[0]).name} exited {proc.returncode}")
            return reason.replace("ERROR: ", "").strip()[:200]
    return None


def ensure_venv(name: str) -> str | None:
    """Create or refresh .venvs/<name> from requirements/<name>.txt; None when ready, else why not."""
    req = REQUIREMENTS / f"{name}.txt"
    venv = VENVS / name
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    stamp = venv / ".bench-requirements"
    if stamp.exists() and stamp.read_text() == digest:
        return None
    shutil.rmtree(venv, ignore_errors=True)
    reason = run_steps([[base_python(), "-m", "venv", str(venv)],
                        [str(venv / "bin" / "python"), *PIP, "-r", str(req)]])
    if reason:
        shutil.rmtree(venv, ignore_errors=True)
        return reason
    stamp.write_text(digest)
    return None


def install(names: list[str]) -> dict[str, str]:
    """Install the peers' venvs in parallel; returns {name: reason} for those that failed."""
    VENVS.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(4) as pool:
        reasons = dict(zip(names, pool.map(ensure_venv, names), strict=True))
    return {name: reason for name, reason in reasons.items() if reason}


# ----------------------------------------------------------------------------- baseline


def git(*args: str) -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"git {args[0]} failed")
    return proc.stdout.strip()


def resolve(rev: str) -> str:
    """REV as a short commit hash; ValueError with git's words when it names no commit."""
    if rev.startswith("-"):
        raise ValueError(f"not a revision: {rev}")
    try:
        return git("rev-parse", "--verify", "--short", f"{rev}^{{commit}}")
    except ValueError:
        raise ValueError("git knows no commit by that name") from None


def describe_head() -> str:
    """The code the current rows run: HEAD's short hash, and whether the package has edits on top."""
    head = git("rev-parse", "--short", "HEAD")
    edited = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "orchestrator",
                             "pyproject.toml"]).returncode != 0
    return f"{head} + uncommitted changes to the package" if edited else head


def baseline_python(sha: str) -> Path:
    return BASELINES / sha / "venv" / "bin" / "python"


def _pins() -> str:
    """The project .venv's installed versions, minus orchestrator itself: the baseline's constraints."""
    return "\n".join(ln for ln in _freeze().splitlines()
                     if ln and not ln.startswith(("-e", "#")) and not ln.lower().startswith("orchestrator")) + "\n"


def _freeze() -> str:
    proc = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else ""


def ensure_baseline(sha: str) -> str | None:
    """Commit ``sha`` installed in its own venv, and its rows import it from there; None when so, else why not."""
    return _install_baseline(sha) or _imports_baseline(sha)


def _imports_baseline(sha: str) -> str | None:
    """Check, in the environment the rows run in (cwd and PYTHONPATH the bench directory), where
    ``import orchestrator`` lands: a checkout on the path would silently measure the wrong code."""
    env = dict(os.environ, PYTHONPATH=str(BENCH))
    proc = subprocess.run([str(baseline_python(sha)), "-c", "import orchestrator; print(orchestrator.__file__)"],
                          cwd=BENCH, env=env, capture_output=True, text=True)
    where = proc.stdout.strip() or proc.stderr.strip()[-200:]
    if not where.startswith(str(BASELINES / sha / "venv")):
        return f"its venv imports orchestrator from {where}, not from the venv"
    return None


def _install_baseline(sha: str) -> str | None:
    """Export commit ``sha`` and install it into its own venv (reused while the pins match); None when ready."""
    home = BASELINES / sha
    venv = home / "venv"
    pins = _pins()
    digest = hashlib.sha256(f"{sha}\n{pins}".encode()).hexdigest()
    stamp = venv / ".bench-installed"
    if stamp.exists() and stamp.read_text() == digest:
        return None
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "constraints.txt").write_text(pins)
    python = str(venv / "bin" / "python")
    reason = run_steps([
        ["git", "-C", str(ROOT), "archive", "--format=tar", "--prefix=src/", "-o", str(home / "src.tar"), sha],
        ["tar", "-xf", "src.tar"],
        [base_python(), "-m", "venv", str(venv)],
        [python, *PIP, "-c", "constraints.txt", "./src"],
    ], cwd=home)
    if reason:
        shutil.rmtree(home, ignore_errors=True)
        return reason
    (home / "src.tar").unlink()
    stamp.write_text(digest)
    return None
