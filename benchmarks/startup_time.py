"""Start-up time: from launching the app to its main window being visible (warm).

    python benchmarks/startup_time.py                  # the app from this checkout
    python benchmarks/startup_time.py --exe dist/empanada-desktop/empanada-desktop   # frozen
    python benchmarks/startup_time.py --runs 7 --file resources/demo/em_stack.tif

Each run starts a fresh process (``python packaging/launcher.py``, the same entry path as the
frozen executable, or the frozen executable itself) with ``EMPANADA_DESKTOP_STARTUP_PROBE`` set:
the app then writes, when its main window is first shown, the time and whether torch had been
imported and by which of our modules (``empanada_desktop/frozen.py``), and exits. The first run
warms the disk cache and is not counted ("warm" = the median of the others). Qt runs offscreen
unless ``--platform`` says otherwise. The target (issue 7) is under 3 s warm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE_ENV = "EMPANADA_DESKTOP_STARTUP_PROBE"
TARGET_SECONDS = 3.0


def one_run(command: list[str], env: dict[str, str], timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="startup_probe_") as folder:
        result_file = Path(folder) / "probe.json"
        env = dict(env, **{PROBE_ENV: str(result_file)})
        started = time.time()
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if not result_file.exists():
            raise RuntimeError(
                f"the app exited ({completed.returncode}) without showing a main window:\n"
                f"{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}"
            )
        result = json.loads(result_file.read_text(encoding="utf-8"))
    result["seconds"] = result["visible_at"] - started
    if result.get("torch_imported_at"):
        result["torch_import_after_seconds"] = result["torch_imported_at"] - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exe", type=Path, help="frozen executable to time (default: this checkout)")
    parser.add_argument("--runs", type=int, default=5, help="runs, the first one not counted (default 5)")
    parser.add_argument("--file", type=Path, help="open this file at start-up")
    parser.add_argument("--platform", default="offscreen", help="QT_QPA_PLATFORM (default offscreen)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run before giving up")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    if args.exe:
        command = [str(args.exe.resolve())]
    else:
        command = [sys.executable, str(ROOT / "packaging" / "launcher.py")]
    if args.file:
        command.append(str(args.file.resolve()))
    env = dict(os.environ, QT_QPA_PLATFORM=args.platform)
    with tempfile.TemporaryDirectory(prefix="startup_home_") as home:
        env.setdefault("EMPANADA_DESKTOP_HOME", home)
        results = [one_run(command, env, args.timeout) for _ in range(max(2, args.runs))]
    warm = [r["seconds"] for r in results[1:]]
    summary = {
        "command": " ".join(command),
        "cold_seconds": round(results[0]["seconds"], 3),
        "warm_median_seconds": round(statistics.median(warm), 3),
        "warm_min_seconds": round(min(warm), 3),
        "warm_runs": len(warm),
        "torch_imported_at_startup": any(r["torch_imported"] for r in results),
        "torch_import_stack": next((r["torch_import_stack"] for r in results if r["torch_imported"]), None),
        "window_title": results[-1].get("window_title"),
        "frozen": results[-1].get("frozen"),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"command: {summary['command']}")
        print(f"cold (first run): {summary['cold_seconds']:.2f} s")
        print(f"warm median of {len(warm)}: {summary['warm_median_seconds']:.2f} s "
              f"(min {summary['warm_min_seconds']:.2f} s; target < {TARGET_SECONDS:.0f} s)")
        if summary["torch_imported_at_startup"]:
            print("torch IS imported before the window shows, first from:")
            for frame in summary["torch_import_stack"] or []:
                print(f"  {frame}")
        else:
            print("torch is not imported before the window shows (lazy, as intended)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
