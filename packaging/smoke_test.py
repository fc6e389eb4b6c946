"""Smoke test of the frozen build: build the bundle, then run its executable offscreen.

    nice -n 19 python packaging/smoke_test.py                 # build (no archive) + smoke test
    python packaging/smoke_test.py --bundle dist/empanada-desktop   # test an existing bundle

Steps, each must exit 0 (the summary lists each step's time; ``--json FILE`` writes it):

1. ``--version`` and ``--help`` (the CLI and every command module load in the bundle);
2. ``models list`` (built-in configs found in the bundle's resources), and worker processes:
   a "spawn" multiprocessing pool and a torch DataLoader with 2 "spawn" workers, which
   re-execute the frozen executable (``EMPANADA_DESKTOP_SELF_CHECK=workers``, frozen.py);
3. the desktop app opens the demo stack offscreen (the start-up probe of
   ``empanada_desktop/frozen.py`` reports the visible window and the open image's shape), and
   ``screenshots`` renders every screen and panel of the app (with demo data) to PNG;
4. a tiny native model (ResNet-18 PanopticDeepLab with seeded random weights, made with this
   checkout's Python as a TorchScript file) is imported with ``models import`` by the bundle;
5. ``finetune`` for 2 iterations on the demo training set (batch 2, 128 px patches), which runs
   the data-loading workers inside the frozen executable;
6. ``infer`` with the finetuned model on the demo stack;
7. ``models export`` of the finetuned model, and a check of the written .pth/.yaml pair.

On Linux, when ``unshare --net`` works (root, or user namespaces), every bundle step runs in a
network namespace without interfaces, so the bundle is also checked to work offline.
The app home and ``~/.empanada`` are temporary folders: nothing of the user's is read or written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bundle_contents as bc  # noqa: E402

ROOT = bc.ROOT
DEMO = ROOT / "resources" / "demo"


class SmokeFailure(RuntimeError):
    pass


class Smoke:
    def __init__(self, bundle: Path, work: Path, offline: bool, timeout: float):
        self.bundle = bundle
        self.work = work
        self.timeout = timeout
        self.steps: list[dict] = []
        cli_name = bc.CLI_NAME if sys.platform in ("win32", "darwin") else bc.APP_NAME
        suffix = ".exe" if sys.platform == "win32" else ""
        self.cli = bundle / f"{cli_name}{suffix}"
        self.gui = bundle / f"{bc.APP_NAME}{suffix}"
        if not self.cli.exists():
            raise SmokeFailure(f"no executable {self.cli}: build the bundle first")
        self.home = work / "home"
        self.empanada_dir = work / "empanada"
        self.home.mkdir(parents=True, exist_ok=True)
        self.empanada_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(
            os.environ,
            QT_QPA_PLATFORM="offscreen",
            EMPANADA_DESKTOP_HOME=str(self.home),
            EMPANADA_DESKTOP_EMPANADA_DIR=str(self.empanada_dir),
        )
        for variable in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            self.env.pop(variable, None)  # the bundle must not lean on the build environment
        self.prefix = ["unshare", "--net"] if offline and _unshare_works() else []

    def run(self, name: str, args: list[str], *, exe: Path | None = None, env: dict | None = None,
            expect: str | None = None) -> subprocess.CompletedProcess:
        command = [*self.prefix, str(exe or self.cli), *args]
        print(f"[smoke] {name}: {' '.join(command)}", flush=True)
        started = time.monotonic()
        try:
            result = subprocess.run(command, env=env or self.env, capture_output=True, text=True,
                                    timeout=self.timeout, cwd=self.work)
        except subprocess.TimeoutExpired as error:
            raise SmokeFailure(f"{name}: no answer after {self.timeout:.0f} s") from error
        seconds = time.monotonic() - started
        self.steps.append({"step": name, "seconds": round(seconds, 2), "rc": result.returncode})
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise SmokeFailure(f"{name} exited {result.returncode} after {seconds:.1f} s:\n{output[-6000:]}")
        if expect is not None and expect not in output:
            raise SmokeFailure(f"{name}: expected {expect!r} in the output:\n{output[-4000:]}")
        print(f"[smoke]   ok in {seconds:.1f} s", flush=True)
        return result

    def open_demo_in_the_app(self) -> dict:
        probe = self.work / "probe.json"
        env = dict(self.env, EMPANADA_DESKTOP_STARTUP_PROBE=str(probe),
                   EMPANADA_DESKTOP_STARTUP_PROBE_DELAY_MS="3000")
        self.run("app opens the demo stack", [str(DEMO / "em_stack.tif")], exe=self.gui, env=env)
        if not probe.exists():
            raise SmokeFailure("the app exited without showing its main window")
        result = json.loads(probe.read_text(encoding="utf-8"))
        if not result.get("window_visible") or not result.get("frozen"):
            raise SmokeFailure(f"main window not visible, or not the frozen app: {result}")
        if not result.get("image_shape"):
            raise SmokeFailure(f"the main window shows no image after opening the demo: {result}")
        print(f"[smoke]   window {result['window_title']!r}, image {result['image_shape']}", flush=True)
        return result

    def make_tiny_model_file(self, source_python: Path) -> Path:
        """A small native model as TorchScript, made by this checkout (the bundle imports it)."""
        out = self.work / "tiny_model"
        code = (
            "import sys; from pathlib import Path;"
            "from empanada_desktop.backend.loading import register_native_model;"
            "m = register_native_model('smoke_tiny', architecture='PanopticDeepLabPR', "
            "encoder='resnet18', like='MitoNet_v1', seed=0);"
            "print(m.weights_path)"
        )
        env = dict(os.environ, EMPANADA_DESKTOP_HOME=str(out / "home"),
                   EMPANADA_DESKTOP_EMPANADA_DIR=str(out / "empanada"))
        started = time.monotonic()
        result = subprocess.run([str(source_python), "-c", code], env=env, capture_output=True,
                                text=True, cwd=ROOT, timeout=self.timeout)
        if result.returncode != 0:
            raise SmokeFailure(f"could not make the tiny model with {source_python}:\n{result.stderr[-4000:]}")
        weights = Path(result.stdout.strip().splitlines()[-1])
        self.steps.append({"step": "make tiny model (source python)", "seconds": round(time.monotonic() - started, 2), "rc": 0})
        return weights


def _unshare_works() -> bool:
    if not sys.platform.startswith("linux") or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0


def smoke(bundle: Path, work: Path, offline: bool, timeout: float, source_python: Path) -> list[dict]:
    s = Smoke(bundle, work, offline, timeout)
    if s.prefix:
        print("[smoke] running the bundle without network (unshare --net)", flush=True)
    s.run("--version", ["--version"], expect=bc.version())
    s.run("--help", ["--help"], expect="models")
    s.run("models list", ["models", "list"], expect="MitoNet_v1")
    s.run("worker processes (spawn)", [], env=dict(s.env, EMPANADA_DESKTOP_SELF_CHECK="workers"),
          expect="DataLoader ok")
    s.open_demo_in_the_app()
    shots = work / "screenshots"
    s.run("screenshots", ["screenshots", str(shots)])
    pngs = sorted(shots.glob("*.png"))
    if not pngs:
        raise SmokeFailure("screenshots wrote no PNG")
    print(f"[smoke]   {len(pngs)} screens: {', '.join(p.stem for p in pngs)}", flush=True)
    weights = s.make_tiny_model_file(source_python)
    s.run("models import", ["models", "import", str(weights), "--name", "smoke_tiny", "--like", "MitoNet_v1"])
    s.run("finetune 2 iterations", [
        "finetune", "--model", "smoke_tiny", "--train-dir", str(DEMO / "training_set"),
        "--iterations", "2", "--batch-size", "2", "--patch-size", "128",
        "--new-name", "smoke_finetuned", "--device", "cpu",
    ])
    out_labels = work / "em_stack_labels.tif"
    s.run("infer", ["infer", "--model", "smoke_finetuned", str(DEMO / "em_stack.tif"),
                    "--output", str(out_labels), "--device", "cpu", "--min-size", "10"])
    if not out_labels.exists():
        raise SmokeFailure(f"infer wrote no {out_labels}")
    export_dir = work / "exported"
    s.run("models export", ["models", "export", "smoke_finetuned", str(export_dir)])
    for suffix in (".pth", ".yaml"):
        if not (export_dir / f"smoke_finetuned{suffix}").is_file():
            raise SmokeFailure(f"models export wrote no smoke_finetuned{suffix} in {export_dir}")
    return s.steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="test this bundle folder instead of building one")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="where to build (default dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller",
                        help="PyInstaller's work folder (default build/pyinstaller)")
    parser.add_argument("--python", type=Path, default=Path(sys.executable),
                        help="Python with PyInstaller for the build, and to make the tiny model")
    parser.add_argument("--online", action="store_true", help="do not cut the network (unshare) for the bundle")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per step (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary app home and outputs")
    parser.add_argument("--json", type=Path, help="also write the step times to this JSON file")
    args = parser.parse_args(argv)

    started = time.monotonic()
    timings: dict[str, float] = {}
    bundle = args.bundle
    if bundle is None:
        build = [str(args.python), str(HERE / "build.py"), "--no-archive", "--python", str(args.python),
                 "--dist", str(args.dist), "--work", str(args.work)]
        print(f"[smoke] build: {' '.join(build)}", flush=True)
        subprocess.run(build, check=True, cwd=ROOT)
        bundle = args.dist / bc.APP_NAME
        timings["build_seconds"] = round(time.monotonic() - started, 1)
    work = Path(tempfile.mkdtemp(prefix="empanada_smoke_"))
    smoke_started = time.monotonic()
    status, error = "passed", None
    steps: list[dict] = []
    try:
        steps = smoke(bundle.resolve(), work, offline=not args.online, timeout=args.timeout,
                      source_python=args.python)
    except SmokeFailure as failure:
        status, error = "failed", str(failure)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    timings["smoke_seconds"] = round(time.monotonic() - smoke_started, 1)
    timings["total_seconds"] = round(time.monotonic() - started, 1)
    summary = {"status": status, "bundle": str(bundle), **timings, "steps": steps, "error": error}
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "error"}, indent=2))
    if error:
        print(f"[smoke] FAILED: {error}", file=sys.stderr)
        return 1
    print(f"[smoke] passed; build + smoke test took {timings['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
