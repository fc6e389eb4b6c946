"""Build the frozen empanada-desktop bundle, and on Linux its tar.gz.

    python packaging/build.py [--models DIR] [--clean-venv] [--dist DIR] [--no-archive]

Steps:
1. choose the Python that builds: this one, or with ``--clean-venv`` a new virtual environment
   (``<work>/venv``) holding only the project's dependencies and PyInstaller, so that nothing
   installed by hand for development ends up in the bundle;
2. run PyInstaller on ``packaging/empanada_desktop.spec`` (``--models DIR`` is passed on to it:
   the weight files in DIR are bundled as preinstalled models);
3. Linux: add ``empanada-desktop-cli`` (a symlink), the .desktop entry, the icon and
   ``install.sh`` to the bundle folder, then pack it as
   ``<dist>/empanada-desktop-<version>-linux-<arch>.tar.gz``;
   Windows and macOS: print the installer command to run next (Inno Setup, make_dmg.sh);
4. print the bundle's size.

The torch wheel decides most of the size. PyPI's Linux torch is the CUDA build (the bundle is
then about 4-5 GB, and runs on NVIDIA GPUs); a CPU-only bundle is much smaller:
``--clean-venv --torch-index-url https://download.pytorch.org/whl/cpu``.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bundle_contents as bc  # noqa: E402

ROOT = bc.ROOT
SPEC = HERE / "empanada_desktop.spec"
LINUX_DIR = HERE / "linux"

logger = logging.getLogger("build")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python packaging/build.py",
        description="Build the frozen empanada-desktop bundle (PyInstaller, one folder) and, on "
        "Linux, its tar.gz with a .desktop entry and icon.",
    )
    parser.add_argument("--models", type=Path, metavar="DIR",
                        help="bundle the weight files in DIR (*.pth, optional *.yaml), e.g. a copy "
                        "of ~/.empanada with MitoNet_v1.pth, as preinstalled models")
    parser.add_argument("--clean-venv", action="store_true",
                        help="build from a new virtual environment with only the project's "
                        "dependencies and PyInstaller (slower; the release way)")
    parser.add_argument("--torch-index-url", metavar="URL",
                        help="with --clean-venv: install torch/torchvision from this package index "
                        "(e.g. PyTorch's CPU-only index for a smaller bundle)")
    parser.add_argument("--python", type=Path, default=Path(sys.executable),
                        help="the Python (with PyInstaller) to build with, without --clean-venv "
                        "(default: this one)")
    parser.add_argument("--dist", type=Path, default=ROOT / "dist",
                        help="output folder (default: dist/)")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "pyinstaller",
                        help="PyInstaller's work folder and the clean venv (default: build/pyinstaller)")
    parser.add_argument("--no-archive", action="store_true",
                        help="stop after the bundle folder (skip the tar.gz)")
    return parser.parse_args(argv)


def run(command: list[str], **kwargs) -> None:
    logger.info("$ %s", " ".join(str(part) for part in command))
    subprocess.run([str(part) for part in command], check=True, **kwargs)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def project_requirements() -> list[str]:
    """The runtime dependencies from pyproject.toml, plus the ``package`` extra (PyInstaller)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"]) + list(project["optional-dependencies"]["package"])


def make_clean_venv(work: Path, torch_index_url: str | None) -> Path:
    """A fresh venv with the project's dependencies only; our package comes from the checkout."""
    venv = work / "venv"
    if venv.exists():
        shutil.rmtree(venv)
    run([sys.executable, "-m", "venv", venv])
    python = venv_python(venv)
    run([python, "-m", "pip", "install", "--upgrade", "pip"])
    requirements = project_requirements()
    if torch_index_url:
        torch_reqs = [r for r in requirements if r.split("<")[0].split(">")[0].strip() in ("torch", "torchvision")]
        run([python, "-m", "pip", "install", "--index-url", torch_index_url, *torch_reqs])
    run([python, "-m", "pip", "install", *requirements])
    return python


def check_pyinstaller(python: Path) -> None:
    result = subprocess.run([str(python), "-c", "import PyInstaller"], capture_output=True)
    if result.returncode != 0:
        raise SystemExit(
            f"{python} has no PyInstaller: install it (pip install -e '.[package]') or use --clean-venv"
        )


def run_pyinstaller(python: Path, dist: Path, work: Path, models: Path | None) -> Path:
    command = [python, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
               "--distpath", dist, "--workpath", work, SPEC]
    if models is not None:
        command += ["--", "--models", models.resolve()]
    run(command, cwd=ROOT)
    bundle = dist / bc.APP_NAME
    if not bundle.is_dir():
        raise SystemExit(f"PyInstaller finished but {bundle} is missing")
    return bundle


def add_linux_files(bundle: Path) -> None:
    """The CLI name, the desktop entry, the icon and the per-user installer, inside the bundle."""
    cli = bundle / bc.CLI_NAME
    if cli.is_symlink() or cli.exists():
        cli.unlink()
    cli.symlink_to(bc.APP_NAME)
    applications = bundle / "share" / "applications"
    icons = bundle / "share" / "icons" / "hicolor" / "256x256" / "apps"
    applications.mkdir(parents=True, exist_ok=True)
    icons.mkdir(parents=True, exist_ok=True)
    shutil.copy2(LINUX_DIR / f"{bc.APP_NAME}.desktop", applications / f"{bc.APP_NAME}.desktop")
    shutil.copy2(bc.ICON_DIR / f"{bc.APP_NAME}.png", icons / f"{bc.APP_NAME}.png")
    installer = bundle / "install.sh"
    shutil.copy2(LINUX_DIR / "install.sh", installer)
    installer.chmod(0o755)


def make_tarball(bundle: Path, dist: Path) -> Path:
    arch = platform.machine().lower() or "unknown"
    name = f"{bc.APP_NAME}-{bc.version()}-linux-{arch}"
    archive = dist / f"{name}.tar.gz"
    if shutil.which("tar"):
        compressor = ["-I", "pigz"] if shutil.which("pigz") else ["-z"]
        run(["tar", "-c", *compressor, "-f", archive, f"--transform=s,^{bc.APP_NAME},{name},S",  # S: leave symlink targets alone
             "-C", dist, bc.APP_NAME])
    else:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(bundle, arcname=name)
    return archive


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human(size: int) -> str:
    return f"{size / 1024**3:.2f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[build] %(message)s")
    args = parse_args(argv)
    if args.models is not None:
        bc.weight_datas(args.models)  # fail early, before minutes of building, on a bad DIR
    dist, work = args.dist.resolve(), args.work.resolve()
    started = time.monotonic()
    python = make_clean_venv(work, args.torch_index_url) if args.clean_venv else args.python
    check_pyinstaller(python)
    bundle = run_pyinstaller(python, dist, work, args.models)
    built = time.monotonic()
    logger.info("bundle: %s (%.0f s)", bundle, built - started)
    if sys.platform.startswith("linux"):
        add_linux_files(bundle)
        if not args.no_archive:
            archive = make_tarball(bundle, dist)
            logger.info("archive: %s (%s, %.0f s)", archive, human(archive.stat().st_size),
                        time.monotonic() - built)
    elif sys.platform == "win32":
        logger.info("next: iscc /DAppVersion=%s /DDistDir=%s packaging\\windows\\empanada-desktop.iss",
                    bc.version(), dist)
    elif sys.platform == "darwin":
        logger.info("next: packaging/macos/make_dmg.sh %s", dist)
    print(f"bundle size: {human(folder_size(bundle))} ({bundle})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
