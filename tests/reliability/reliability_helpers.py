"""Helpers shared by the reliability tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def leftovers(folder: Path) -> list[str]:
    """Temporary and staging files a failed write might have left under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith((".staging-", ".trash-", ".empanada-work-")) or p.name.endswith(".tmp"))


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m empanada_desktop ARGS`` in a subprocess with this checkout first on the path."""
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO), environment.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "empanada_desktop", *args], capture_output=True, text=True,
                          env=environment, timeout=timeout)
