"""Where a result came from: code version (with git SHA and dirty flag), packages, host."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import socket
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import sim

PACKAGES = ("mesa", "numpy", "pandas", "scipy", "SQLAlchemy", "pydantic", "PyYAML", "matplotlib")


@functools.cache
def git_state() -> tuple[str, bool]:
    """(commit SHA or 'unknown', whether the work tree has uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=5, check=True).stdout.strip())
        return sha, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


MODEL_MODULES = ("parameters.py", "scenario.py", "schema.py", "components.py", "population_spec.py", "scales.py",
                 "vocabulary.py", "model/population.py", "model/programme.py", "model/dynamics.py", "model/kernel.py", "model/model.py",
                 "model/draws.py", "model/blocks.py", "model/stack.py", "runs/records.py", "runs/runner.py")


@functools.cache
def model_hash() -> str:
    """Hash of the source of every module that shapes a run's numbers: a stored run is reused only
    when this matches, so changing the model never mixes old and new results."""
    h = hashlib.sha256()
    for name in MODEL_MODULES:
        h.update((Path(__file__).resolve().parents[1] / name).read_bytes())
    return h.hexdigest()[:16]


def code_version() -> str:
    """Package version plus short git SHA, e.g. '0.1.0+g1a2b3c4' or '0.1.0+g1a2b3c4.dirty'."""
    sha, dirty = git_state()
    if sha == "unknown":
        return sim.__version__
    return f"{sim.__version__}+g{sha[:7]}{'.dirty' if dirty else ''}"


@functools.cache
def package_versions() -> str:
    """JSON of the versions of Python and the packages results depend on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return json.dumps(out, sort_keys=True)


def host() -> str:
    """This machine's name."""
    return socket.gethostname()
