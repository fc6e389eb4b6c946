"""Cheap checks of the packaging recipes (no PyInstaller build; that is packaging/smoke_test.py)."""

from __future__ import annotations

import ast
import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"


def load(name: str):
    """Import a file of packaging/ by path (the folder must not shadow the `packaging` library)."""
    spec = importlib.util.spec_from_file_location(f"_packaging_{name}", PACKAGING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bc():
    return load("bundle_contents")


def test_packaging_folder_does_not_shadow_the_packaging_library():
    assert not (PACKAGING / "__init__.py").exists()
    import packaging.version  # the PyPI library pip/pytest/PyInstaller use

    assert "site-packages" in packaging.version.__file__ or "dist-packages" in packaging.version.__file__


def test_spec_parses_and_uses_the_shared_contents():
    source = (PACKAGING / "empanada_desktop.spec").read_text(encoding="utf-8")
    tree = ast.parse(source, filename="empanada_desktop.spec")
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {"Analysis", "PYZ", "EXE", "COLLECT", "BUNDLE"} <= called
    for needed in ("bc.hidden_imports()", "bc.EXCLUDED_MODULES", "bc.resource_datas()",
                   "bc.weight_datas(", "bc.MODULE_COLLECTION_MODE", "launcher.py"):
        assert needed in source


def test_launcher_calls_freeze_support_first():
    tree = ast.parse((PACKAGING / "launcher.py").read_text(encoding="utf-8"))
    main_block = next(node for node in tree.body if isinstance(node, ast.If))
    first_calls = [ast.unparse(node) for node in main_block.body[:2]]
    assert first_calls == ["from empanada_desktop.frozen import prepare", "prepare()"]
    frozen = (ROOT / "empanada_desktop" / "frozen.py").read_text(encoding="utf-8")
    assert "multiprocessing.freeze_support()" in frozen


def test_hidden_imports_cover_every_module_of_the_package(bc):
    hidden = set(bc.hidden_imports())
    on_disk = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "empanada_desktop").rglob("*.py")
    }
    assert on_disk - hidden == set()
    assert {"empanada_desktop.cli", "empanada_desktop.frozen", "empanada_desktop.cli.gui"} <= hidden
    # Every command module the CLI loads by name is a real module that will be bundled.
    cli = (ROOT / "empanada_desktop" / "cli" / "__init__.py").read_text(encoding="utf-8")
    commands = next(
        node.value for node in ast.walk(ast.parse(cli))
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COMMAND_MODULES"
    )
    for name in ast.literal_eval(commands):
        assert name in hidden, f"{name} is in COMMAND_MODULES but not in the package"


def test_excluded_modules_are_not_imported_by_our_code(bc):
    imported = bc.imported_top_modules()
    clashes = sorted(
        name for name in imported
        for excluded in bc.EXCLUDED_MODULES
        if name == excluded or name.startswith(excluded + ".")
    )
    assert clashes == [], f"the bundle excludes modules the app imports: {clashes}"
    # None of the hidden imports is excluded either.
    assert not set(bc.hidden_imports()) & set(bc.EXCLUDED_MODULES)


def test_excluded_file_patterns(bc):
    assert bc.is_excluded_file("torch/include/ATen/ATen.h")
    assert bc.is_excluded_file("torch\\lib\\foo.lib")
    assert bc.is_excluded_file("triton/_C/libtriton.so")
    assert not bc.is_excluded_file("torch/lib/libtorch_cpu.so")
    assert bc.is_excluded_file("torch/bin/protoc-3.21.12.0")
    assert not bc.is_excluded_file("torch/bin/torch_shm_manager")  # import torch needs it
    assert not bc.is_excluded_file("PySide6/Qt/plugins/platforms/libqoffscreen.so")
    assert not bc.is_excluded_file("resources/models/MitoNet_v1.yaml")


def test_resources_are_bundled_under_resources(bc):
    datas = bc.resource_datas()
    destinations = {dest for _, dest in datas}
    assert all(dest == "resources" or dest.startswith("resources/") for dest in destinations)
    names = {Path(src).name for src, _ in datas}
    assert "empanada-desktop.png" in names
    assert any(name.endswith(".yaml") for name in names), "built-in model configs missing"


def test_weight_datas_from_a_models_folder(bc, tmp_path):
    assert bc.weight_datas(None) == []
    with pytest.raises(ValueError, match="no .pth"):
        bc.weight_datas(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        bc.weight_datas(tmp_path / "missing")
    (tmp_path / "MitoNet_v1.pth").write_bytes(b"weights")
    (tmp_path / "MyMito.yaml").write_text("model: MyMito.pth\n")
    (tmp_path / "notes.txt").write_text("not bundled")
    datas = bc.weight_datas(tmp_path)
    assert sorted(Path(src).name for src, _ in datas) == ["MitoNet_v1.pth", "MyMito.yaml"]
    assert {dest for _, dest in datas} == {"resources/models_weights"}


def test_bundled_weights_are_found_in_a_frozen_app(bc, monkeypatch, tmp_path):
    from empanada_desktop import frozen
    from empanada_desktop.core import resources
    from empanada_desktop.core.registry import ModelRegistry

    assert frozen.bundle_root() == ROOT
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert frozen.is_frozen()
    # The bundle layout written by bundle_contents.weight_datas is where the registry looks.
    weights = tmp_path / "resources" / bc.BUNDLED_WEIGHTS_DIRNAME
    assert resources.bundled_weights_dir() == weights
    shutil.copytree(ROOT / "resources" / "models", tmp_path / "resources" / "models")
    weights.mkdir(parents=True)
    (weights / "MitoNet_v1.pth").write_bytes(b"x")
    mito = ModelRegistry().get("MitoNet_v1")
    assert mito.source == "bundled" and mito.weights_path == weights / "MitoNet_v1.pth"


def test_version_and_windows_version_resource(bc):
    import empanada_desktop

    assert bc.version() == empanada_desktop.__version__
    text = bc.windows_version_info("1.2.3")
    assert "filevers=(1, 2, 3, 0)" in text and "StringStruct('ProductVersion', '1.2.3')" in text
    compile(text, "version_info", "eval")  # PyInstaller evaluates it as a Python expression


def test_build_script_help_and_requirements():
    result = subprocess.run([sys.executable, str(PACKAGING / "build.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--models", "--clean-venv", "--dist", "--no-archive", "--torch-index-url"):
        assert option in result.stdout
    build = load("build")
    requirements = build.project_requirements()
    assert any(r.startswith("torch") for r in requirements)
    assert any(r.lower().startswith("pyinstaller") for r in requirements)


def test_build_script_rejects_a_models_folder_without_weights(tmp_path):
    result = subprocess.run([sys.executable, str(PACKAGING / "build.py"), "--models", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "no .pth" in result.stderr


def test_smoke_test_script_help():
    result = subprocess.run([sys.executable, str(PACKAGING / "smoke_test.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--bundle" in result.stdout


DESKTOP_REQUIRED = {"Type", "Name", "Exec", "Icon", "Categories"}


def test_desktop_entry_is_valid(tmp_path):
    path = PACKAGING / "linux" / "empanada-desktop.desktop"
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert DESKTOP_REQUIRED <= set(entry)
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == "empanada-desktop"
    assert entry["Categories"].endswith(";") and entry["MimeType"].endswith(";")
    assert entry["Terminal"] == "false"
    assert (ROOT / "resources" / "icons" / f"{entry['Icon']}.png").exists()
    validator = shutil.which("desktop-file-validate")
    if validator:
        # install.sh rewrites Exec to the absolute path; validate both forms.
        result = subprocess.run([validator, str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_linux_install_script_installs_and_uninstalls(tmp_path):
    """Run install.sh on a fake bundle with HOME in a temporary folder."""
    if sys.platform == "win32" or not shutil.which("sh"):
        pytest.skip("install.sh is for Linux")
    bundle = tmp_path / "bundle"
    (bundle / "share" / "applications").mkdir(parents=True)
    (bundle / "share" / "icons" / "hicolor" / "256x256" / "apps").mkdir(parents=True)
    shutil.copy(PACKAGING / "linux" / "empanada-desktop.desktop", bundle / "share" / "applications")
    shutil.copy(ROOT / "resources" / "icons" / "empanada-desktop.png",
                bundle / "share" / "icons" / "hicolor" / "256x256" / "apps")
    shutil.copy(PACKAGING / "linux" / "install.sh", bundle / "install.sh")
    exe = bundle / "empanada-desktop"
    exe.write_text("#!/bin/sh\necho fake\n")
    exe.chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(["sh", str(bundle / "install.sh")], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    desktop = home / ".local/share/applications/empanada-desktop.desktop"
    target = home / ".local/opt/empanada-desktop"
    assert f'Exec="{target}/empanada-desktop" %F' in desktop.read_text()
    assert (home / ".local/bin/empanada-desktop").resolve() == (target / "empanada-desktop").resolve()
    assert (home / ".local/share/icons/hicolor/256x256/apps/empanada-desktop.png").exists()
    validator = shutil.which("desktop-file-validate")
    if validator:
        check = subprocess.run([validator, str(desktop)], capture_output=True, text=True)
        assert check.returncode == 0 and not check.stdout.strip(), check.stdout
    result = subprocess.run(["sh", str(target / "install.sh"), "--uninstall"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not desktop.exists() and not target.exists()


def test_installer_recipes_reference_real_files():
    iss = (PACKAGING / "windows" / "empanada-desktop.iss").read_text(encoding="utf-8")
    for relative in ("..\\..\\resources\\icons\\empanada-desktop.ico", "..\\..\\LICENSE"):
        assert relative in iss
        assert (PACKAGING / "windows" / relative.replace("\\", "/")).resolve().exists()
    assert "empanada-desktop.exe" in iss and "{group}" in iss and "AppVersion" in iss
    dmg = (PACKAGING / "macos" / "make_dmg.sh").read_text(encoding="utf-8")
    assert "hdiutil create" in dmg and "empanada-desktop.app" in dmg
    for icon in ("empanada-desktop.png", "empanada-desktop.ico", "empanada-desktop.icns"):
        path = ROOT / "resources" / "icons" / icon
        assert path.exists() and path.stat().st_size < 1024 * 1024


def test_spawned_workers_run_through_the_launcher():
    """freeze_support() in the entry path: "spawn" workers (Pool and DataLoader) do their work."""
    env = dict(os.environ, EMPANADA_DESKTOP_SELF_CHECK="workers")
    result = subprocess.run([sys.executable, str(PACKAGING / "launcher.py")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pool ok" in result.stdout and "DataLoader ok" in result.stdout


def test_linux_archive_of_a_fake_bundle(tmp_path):
    """The tar.gz keeps the CLI symlink pointing at the app, and carries the desktop files."""
    if sys.platform == "win32" or not shutil.which("tar"):
        pytest.skip("the tar.gz is made on Linux")
    import tarfile

    build = load("build")
    bundle = tmp_path / "empanada-desktop"
    bundle.mkdir()
    (bundle / "empanada-desktop").write_text("#!/bin/sh\n")
    build.add_linux_files(bundle)
    archive = build.make_tarball(bundle, tmp_path)
    with tarfile.open(archive) as tar:
        members = {m.name.split("/", 1)[-1]: m for m in tar.getmembers()}
    assert members["empanada-desktop-cli"].issym()
    assert members["empanada-desktop-cli"].linkname == "empanada-desktop"
    for needed in ("install.sh", "share/applications/empanada-desktop.desktop",
                   "share/icons/hicolor/256x256/apps/empanada-desktop.png"):
        assert needed in members
    assert members["install.sh"].mode & 0o111
