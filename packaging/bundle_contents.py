"""What goes into the frozen bundle, as plain data and functions (no PyInstaller import).

Shared by ``empanada_desktop.spec`` (which builds from it) and ``tests/e2e/test_packaging.py``
(which checks it cheaply in CI). This folder has no ``__init__.py`` on purpose: a package named
``packaging`` would shadow the PyPI library of that name that pip, pytest and PyInstaller use.
Load this file by path (the spec puts ``packaging/`` on ``sys.path``).
"""

from __future__ import annotations

import ast
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "empanada_desktop"
APP_NAME = "empanada-desktop"
CLI_NAME = "empanada-desktop-cli"
DISPLAY_NAME = "empanada-desktop"
BUNDLE_IDENTIFIER = "org.empanada.desktop"
ICON_DIR = ROOT / "resources" / "icons"
BUNDLED_WEIGHTS_DIRNAME = "models_weights"  # == core.resources.bundled_weights_dir().name

# Modules the app never uses and that are big, or that drag in big things. Excluding them here
# only matters if something imports them by accident (the hooks of torch and PySide6 collect
# whole packages); test_packaging checks that our own code imports none of them.
EXCLUDED_MODULES = (
    # Qt modules outside PySide6-Essentials' core set that we do not use.
    "PySide6.Qt3DAnimation", "PySide6.Qt3DCore", "PySide6.Qt3DExtras", "PySide6.Qt3DInput",
    "PySide6.Qt3DLogic", "PySide6.Qt3DRender", "PySide6.QtBluetooth", "PySide6.QtCharts",
    "PySide6.QtDataVisualization", "PySide6.QtDesigner", "PySide6.QtGraphs",
    "PySide6.QtGraphsWidgets", "PySide6.QtHelp", "PySide6.QtHttpServer", "PySide6.QtLocation",
    "PySide6.QtMultimedia", "PySide6.QtMultimediaWidgets", "PySide6.QtNetworkAuth",
    "PySide6.QtNfc", "PySide6.QtPdf", "PySide6.QtPdfWidgets", "PySide6.QtPositioning",
    "PySide6.QtQuick", "PySide6.QtQuick3D", "PySide6.QtQuickControls2", "PySide6.QtQuickWidgets",
    "PySide6.QtQml", "PySide6.QtRemoteObjects", "PySide6.QtScxml", "PySide6.QtSensors",
    "PySide6.QtSerialBus", "PySide6.QtSerialPort", "PySide6.QtSpatialAudio", "PySide6.QtSql",
    "PySide6.QtStateMachine", "PySide6.QtTextToSpeech", "PySide6.QtUiTools",
    "PySide6.QtWebChannel", "PySide6.QtWebEngineCore", "PySide6.QtWebEngineQuick",
    "PySide6.QtWebEngineWidgets", "PySide6.QtWebSockets",
    # (PySide6.QtTest stays: pyqtgraph imports it at start-up.)
    # Other Qt bindings pyqtgraph would happily pick up; we use PySide6 only.
    "PyQt5", "PyQt6", "PySide2",
    # torch's developer bits and its GPU kernel compiler (we train in eager mode; torch only
    # probes for triton with find_spec). torch.testing._internal stays: `import torch` uses it.
    "torch.utils.tensorboard", "torch.utils.benchmark",
    "torch.utils.bottleneck", "triton", "tensorboard",
    # Things optional imports in numpy/torch/pyqtgraph/Pillow reach for.
    "tkinter", "_tkinter", "matplotlib", "IPython", "jupyter_client", "notebook", "pytest",
    "pytestqt", "setuptools", "pip", "sphinx", "cupy",
    # scipy (about 80 MB) comes in through optional imports of torch and pyqtgraph only; it is
    # not a dependency of ours, and test_packaging fails if our code starts importing it.
    "scipy", "pyqtgraph.opengl", "OpenGL",
    "pyqtgraph.examples", "pyqtgraph.jupyter", "PyInstaller",
)

# Data and binary files left out of the bundle (glob patterns on the destination path).
EXCLUDED_FILE_PATTERNS = (
    "torch/include/*", "torch/share/cmake/*", "torch/bin/protoc*", "torch/test/*",
    # (torch/bin/torch_shm_manager stays: `import torch` looks for it.)
    "*.a", "*.lib", "*.pyi", "*.cmake", "*.h", "*.hpp", "*.cuh",
    "triton/*", "nvidia/*/include/*",
    # Qt translations for the Qt tools and other data we never load.
    "PySide6/Qt/translations/qtwebengine*", "PySide6/Qt/translations/designer*",
    "PySide6/Qt/translations/linguist*", "PySide6/Qt/translations/assistant*",
    # Qt libraries of the excluded modules that the PySide6 hooks may still pull in as files.
    "PySide6/Qt/lib/libQt6Quick*", "PySide6/Qt/lib/libQt6Qml*", "PySide6/Qt/lib/libQt6Pdf*",
    "PySide6/Qt/lib/libQt6WebEngine*", "PySide6/Qt/lib/libQt6Designer*",
    "PySide6/Qt/qml/*",
)

# Qt plugins that the app needs: "platforms" (xcb/wayland on Linux desktops, offscreen for
# the smoke test and headless screenshots, cocoa, windows), image formats, icons and styles.
REQUIRED_QT_PLUGIN_DIRS = ("platforms", "imageformats", "iconengines")

# Every module of our package is listed as a hidden import: the CLI imports its command modules
# by name (``importlib.import_module``), which PyInstaller's import analysis cannot follow.
# The package's .py sources are collected too ("pyz+py"): torch.jit.script reads a module's
# source to compile the native models when they are exported, which fails on bytecode alone.
MODULE_COLLECTION_MODE = {PACKAGE: "pyz+py"}


def package_modules(root: Path = ROOT) -> list[str]:
    """All importable modules of ``empanada_desktop`` found on disk (no import needed)."""
    package_dir = root / PACKAGE
    names = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(root).with_suffix("")
        parts = list(relative.parts)
        if "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def hidden_imports(root: Path = ROOT) -> list[str]:
    """Hidden imports for the Analysis: our whole package plus modules loaded by name."""
    extra = [
        # Workers of multiprocessing/DataLoader and qasync's event loop are imported late.
        "multiprocessing.popen_spawn_posix",
        "multiprocessing.popen_fork",
        "multiprocessing.popen_spawn_win32",
        "qasync",
        "yaml",
        "tifffile",
        "platformdirs",
    ]
    return package_modules(root) + extra


def imported_top_modules(root: Path = ROOT) -> set[str]:
    """Every module name our package imports (``import x.y`` -> ``x.y``), read from the AST."""
    found: set[str] = set()
    for path in (root / PACKAGE).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def is_excluded_file(dest: str) -> bool:
    """True for a bundle destination path that matches :data:`EXCLUDED_FILE_PATTERNS`."""
    dest = dest.replace("\\", "/")
    return any(fnmatch.fnmatch(dest, pattern) for pattern in EXCLUDED_FILE_PATTERNS)


def resource_datas(root: Path = ROOT) -> list[tuple[str, str]]:
    """(source, destination folder) pairs for ``resources/`` (configs, demo data, icons)."""
    resources = root / "resources"
    datas = []
    for path in sorted(resources.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and "__pycache__" not in path.parts:
            if BUNDLED_WEIGHTS_DIRNAME in path.relative_to(resources).parts:
                continue  # only --models fills that folder, never a stray local copy
            datas.append((str(path), str(path.parent.relative_to(root))))
    return datas


def weight_datas(models_dir: Path | None) -> list[tuple[str, str]]:
    """(source, destination folder) pairs for the weight files of ``--models DIR``.

    Takes ``*.pth`` (TorchScript, as empanada names them: ``MitoNet_v1.pth``) and the ``*.yaml``
    configs beside them (user-finetuned models), from DIR itself (not its subfolders).
    Raises ValueError when DIR has no ``.pth`` file, so a typo does not build a bundle without
    the weights a site was promised.
    """
    if models_dir is None:
        return []
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ValueError(f"--models: {models_dir} is not a folder")
    weights = sorted(models_dir.glob("*.pth"))
    if not weights:
        raise ValueError(
            f"--models: {models_dir} holds no .pth weight file (expected e.g. MitoNet_v1.pth, "
            "as empanada-napari stores it in ~/.empanada)"
        )
    configs = sorted(models_dir.glob("*.yaml"))
    dest = f"resources/{BUNDLED_WEIGHTS_DIRNAME}"
    return [(str(path), dest) for path in weights + configs]


def version(root: Path = ROOT) -> str:
    """The package version, read from ``empanada_desktop/__init__.py`` without importing it."""
    tree = ast.parse((root / PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__version__" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise RuntimeError("empanada_desktop/__init__.py defines no __version__")


def windows_version_info(version_string: str) -> str:
    """The text of a PyInstaller Windows version resource (``EXE(version=...)``)."""
    numbers = [int(part) for part in version_string.split(".")[:4] if part.isdigit()]
    numbers += [0] * (4 - len(numbers))
    tuple_text = "(" + ", ".join(str(n) for n in numbers) + ")"
    fields = {
        "CompanyName": "empanada-desktop contributors",
        "FileDescription": "Finetune empanada organelle-segmentation models",
        "FileVersion": version_string,
        "InternalName": APP_NAME,
        "LegalCopyright": "BSD-3-Clause",
        "OriginalFilename": f"{APP_NAME}.exe",
        "ProductName": DISPLAY_NAME,
        "ProductVersion": version_string,
    }
    string_structs = ",\n          ".join(f"StringStruct('{k}', '{v}')" for k, v in fields.items())
    return f"""VSVersionInfo(
  ffi=FixedFileInfo(filevers={tuple_text}, prodvers={tuple_text}, mask=0x3f, flags=0x0,
                    OS=0x40004, fileType=0x1, subtype=0x0, date=(0, 0)),
  kids=[
    StringFileInfo([StringTable('040904B0', [
          {string_structs}])]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""
