"""What gyre records about where a run came from, without being asked.

Tags: ``gyre.source.name`` (entry point), ``gyre.source.git.commit``,
``gyre.source.git.dirty``, ``gyre.source.git.branch``, ``gyre.user``,
``gyre.python.version``, ``gyre.platform`` and ``gyre.packages`` (JSON: versions of gyre and
of the scientific packages the process has imported). Collected off the logging path: git
is a subprocess, so it runs in the writer's time, not the caller's.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["source_tags"]

# import name -> distribution name, for packages whose versions explain a result
_WATCHED = {
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "pyarrow": "pyarrow",
    "sklearn": "scikit-learn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "statsmodels": "statsmodels",
}


def _entry_point() -> str:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else "")
    return str(Path(path).resolve()) if path and path != "-c" else "<interactive>"


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _packages() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in ["gyreml", *(d for mod, d in _WATCHED.items() if mod in sys.modules)]:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def source_tags() -> dict[str, str]:
    entry = _entry_point()
    tags = {
        "gyre.source.name": entry,
        "gyre.python.version": platform.python_version(),
        "gyre.platform": platform.platform(terse=True),
        "gyre.packages": json.dumps(_packages(), sort_keys=True),
    }
    with contextlib.suppress(KeyError, OSError):
        tags["gyre.user"] = getpass.getuser()
    where = Path(entry).parent if entry != "<interactive>" else Path(os.getcwd())
    commit = _git(["rev-parse", "HEAD"], where) if where.is_dir() else None
    if commit:
        tags["gyre.source.git.commit"] = commit
        status = _git(["status", "--porcelain", "--untracked-files=no"], where)
        tags["gyre.source.git.dirty"] = "true" if status else "false"
        branch = _git(["rev-parse", "--abbrev-ref", "HEAD"], where)
        if branch:
            tags["gyre.source.git.branch"] = branch
    return tags
