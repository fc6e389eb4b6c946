"""ModelRegistry: built-ins, import with verification, rename/remove, ~/.empanada discovery."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest

from empanada_desktop.core import paths
from empanada_desktop.core.errors import ModelLoadError, RegistryError
from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.registry import ModelRegistry
from empanada_desktop.core.registry_files import weights_file_name


def fake_torchscript(path: Path, payload: bytes = b"weights") -> Path:
    """A zip laid out like torch.jit.save's output (enough for the registry's own check)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00." + payload)
        archive.writestr("model/code/__torch__/model.py", "class Model: pass\n")
        archive.writestr("model/constants.pkl", b"\x80\x02)." )
        archive.writestr("model/version", "3\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


class FakeVerify:
    def __init__(self, parameters=1234, error: Exception | None = None):
        self.calls: list[Path] = []
        self.parameters = parameters
        self.error = error

    def __call__(self, path):
        self.calls.append(Path(path))
        if self.error is not None:
            raise self.error
        return {"parameters": self.parameters, "format": "torchscript"}


def _state(registry: ModelRegistry):
    files = sorted(str(p.relative_to(registry.models_dir)) for p in registry.models_dir.rglob("*"))
    return files, [(m.name, m.source, m.installed) for m in registry.list()]


def test_builtins_without_weights_say_which_file_to_import():
    registry = ModelRegistry()
    models = {m.name: m for m in registry.list()}
    assert list(models)[:4] == ["MitoNet_v1", "MitoNet_v1_mini", "NucleoNet_base_v2", "DropNet_base_v1"]
    mito = models["MitoNet_v1"]
    assert mito.builtin and mito.source == "builtin" and not mito.installed
    assert mito.weights_path is None
    assert "weights not installed" in mito.missing_weights_hint
    assert "MitoNet_v1.pth" in mito.missing_weights_hint
    assert models["MitoNet_v1_mini"].weights_file_name == "MitoNet_v1_mini.pth"
    assert weights_file_name("https://x.org/files/A%20b.pth?download=1") == "A b.pth"


def test_import_builtin_weights_copies_verifies_and_records(tmp_path):
    source = fake_torchscript(tmp_path / "downloads" / "MitoNet_v1.pth")
    verify = FakeVerify(parameters=55_000_000)
    registry = ModelRegistry()
    model = registry.import_weights(source, "MitoNet_v1", verify=verify)
    assert verify.calls == [source]
    folder = paths.models_dir() / "MitoNet_v1"
    assert model.weights_path == folder / "MitoNet_v1.pth"
    assert model.installed and model.builtin and model.source == "builtin" and model.registered
    assert model.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert model.size == source.stat().st_size
    assert model.parameters == 55_000_000
    # The stored pair is what empanada-napari loads: yaml model: -> the copied .pth.
    stored = ModelConfig.from_yaml(folder / "MitoNet_v1.yaml")
    assert Path(stored.model) == folder / "MitoNet_v1.pth"
    assert stored.padding_factor == 16 and stored.class_names == {1: "mito"}
    entry = json.loads((folder / "registry.json").read_text())
    assert entry["sha256"] == model.sha256 and entry["imported_from"] == str(source.resolve())
    # A fresh registry object reads the same state back.
    again = ModelRegistry().get("MitoNet_v1")
    assert again == model
    assert not any(p.name.startswith(".") for p in paths.models_dir().iterdir())


def test_import_user_model_like_builtin_and_describe(tmp_path):
    source = fake_torchscript(tmp_path / "finetuned.pth")
    registry = ModelRegistry()
    model = registry.import_weights(source, "MyMito", like="MitoNet_v1_mini", verify=FakeVerify(7))
    assert model.source == "user" and not model.builtin
    assert model.config.padding_factor == 128
    info = registry.describe("MyMito")
    assert info["classes"] == {1: "mito"} and info["kind"] == "instance"
    assert info["first_label"] == {"mito": 1} and info["parameters"] == 7
    assert info["installed"] and info["missing_weights"] is None


def test_import_with_config_file_or_sibling_yaml(tmp_path):
    config = ModelConfig.from_dict(
        {"class_names": {1: "mito", 2: "er"}, "labels": [1, 2], "thing_list": [1], "model": "x.pth",
         "padding_factor": 32}
    )
    yaml_path = config.to_yaml(tmp_path / "custom.yaml")
    source = fake_torchscript(tmp_path / "a.pth")
    registry = ModelRegistry()
    model = registry.import_weights(source, "Multi", config_file=yaml_path, verify=FakeVerify())
    assert model.config.num_classes == 3  # 2 classes + background
    info = registry.describe("Multi")
    assert info["kind"].startswith("panoptic")
    assert info["first_label"] == {"mito": 1001, "er": 2001}
    # An empanada export (x.pth next to x.yaml) needs no flag.
    pair = fake_torchscript(tmp_path / "export" / "custom.pth")
    config.to_yaml(pair.with_suffix(".yaml"))
    assert registry.import_weights(pair, "FromPair", verify=FakeVerify()).config.padding_factor == 32


def test_import_without_any_config_asks_for_one(tmp_path):
    source = fake_torchscript(tmp_path / "mystery.pth")
    with pytest.raises(RegistryError, match="--like"):
        ModelRegistry().import_weights(source, "Mystery", verify=FakeVerify())


def test_failed_verify_leaves_registry_unchanged(tmp_path):
    registry = ModelRegistry()
    registry.import_weights(fake_torchscript(tmp_path / "ok.pth"), "Good", like="MitoNet_v1", verify=FakeVerify())
    before = _state(registry)
    bad = fake_torchscript(tmp_path / "bad.pth", payload=b"other")
    verify = FakeVerify(error=ModelLoadError(f"{tmp_path / 'bad.pth'} does not load"))
    with pytest.raises(ModelLoadError, match="does not load"):
        registry.import_weights(bad, "Bad", like="MitoNet_v1", verify=verify)
    assert _state(registry) == before
    # An unexpected loader exception becomes a ModelLoadError naming the file.
    with pytest.raises(ModelLoadError, match="bad.pth"):
        registry.import_weights(bad, "Bad", like="MitoNet_v1", verify=FakeVerify(error=RuntimeError("boom")))
    assert _state(registry) == before


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text("just some text, not a model\n"), "not a TorchScript model"),
        (lambda p: p.write_bytes(fake_torchscript(p).read_bytes()[:60]), "truncated"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: _plain_checkpoint(p), "plain PyTorch checkpoint"),
    ],
)
def test_bad_files_are_refused_before_anything_is_written(tmp_path, make, message):
    registry = ModelRegistry()
    before = _state(registry)
    path = tmp_path / "MitoNet_v1.pth"
    make(path)
    verify = FakeVerify()
    with pytest.raises(ModelLoadError, match=message) as info:
        registry.import_weights(path, "MitoNet_v1", verify=verify)
    assert str(path) in str(info.value)
    assert verify.calls == []
    assert _state(registry) == before


def _plain_checkpoint(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}.")
        archive.writestr("archive/version", "3\n")


def test_missing_file_and_bad_names(tmp_path):
    registry = ModelRegistry()
    with pytest.raises(ModelLoadError, match="does not exist"):
        registry.import_weights(tmp_path / "nope.pth", "X", like="MitoNet_v1")
    source = fake_torchscript(tmp_path / "m.pth")
    for bad in ("", "has space", "../escape", "a/b", ".hidden"):
        with pytest.raises(RegistryError, match="cannot be a model name"):
            registry.import_weights(source, bad, like="MitoNet_v1")
    registry.import_weights(source, "Taken", like="MitoNet_v1")
    with pytest.raises(RegistryError, match="already registered"):
        registry.import_weights(source, "taken", like="MitoNet_v1")


def test_unknown_name_lists_known_ones():
    with pytest.raises(RegistryError) as info:
        ModelRegistry().get("NoSuchNet")
    assert "NoSuchNet" in str(info.value) and "MitoNet_v1_mini" in str(info.value)


def test_rename_and_remove(tmp_path):
    registry = ModelRegistry()
    model = registry.import_weights(fake_torchscript(tmp_path / "m.pth"), "Old", like="MitoNet_v1", verify=FakeVerify())
    renamed = registry.rename("Old", "New")
    folder = paths.models_dir() / "New"
    assert renamed.weights_path == folder / "New.pth" and renamed.installed
    assert renamed.sha256 == model.sha256
    assert sorted(p.name for p in folder.iterdir()) == ["New.pth", "New.yaml", "registry.json"]
    assert Path(ModelConfig.from_yaml(folder / "New.yaml").model) == folder / "New.pth"
    assert not (paths.models_dir() / "Old").exists()
    with pytest.raises(RegistryError, match="Known models"):
        registry.get("Old")
    with pytest.raises(RegistryError, match="built-in"):
        registry.rename("MitoNet_v1", "Mine")
    with pytest.raises(RegistryError, match="cannot be a model name"):
        registry.rename("New", "bad name")
    registry.remove("New")
    assert "New" not in registry.names()
    assert not any(paths.models_dir().iterdir())
    with pytest.raises(RegistryError, match="built-in"):
        registry.remove("DropNet_base_v1")


def test_removing_builtin_weights_falls_back_to_not_installed(tmp_path):
    registry = ModelRegistry()
    registry.import_weights(fake_torchscript(tmp_path / "MitoNet_v1.pth"), "MitoNet_v1", verify=FakeVerify())
    registry.remove("MitoNet_v1")
    mito = registry.get("MitoNet_v1")
    assert mito.source == "builtin" and not mito.installed


def test_register_without_copy_refers_to_the_file(tmp_path):
    weights = fake_torchscript(tmp_path / "run" / "model.pth")
    config = ModelRegistry().get("MitoNet_v1").config
    model = ModelRegistry().register("InPlace", config, weights, copy=False)
    assert model.weights_path == weights.resolve()
    assert not (paths.models_dir() / "InPlace" / "InPlace.pth").exists()
    renamed = ModelRegistry().rename("InPlace", "Moved")
    assert renamed.weights_path == weights.resolve()


def test_discovers_empanada_install_without_copying(tmp_path):
    empanada = paths.empanada_user_dir()
    fake_torchscript(empanada / "MitoNet_v1.pth")
    finetuned = fake_torchscript(empanada / "models" / "MyFinetuned.pth")
    configs = empanada / "configs"
    configs.mkdir(parents=True)
    base = ModelConfig.from_yaml(Path(__file__).resolve().parents[2] / "resources/models/MitoNet_v1.yaml")
    base.with_model_path(str(finetuned)).to_yaml(configs / "MyFinetuned.yaml")
    base.with_model_path("https://example.org/files/NotDownloaded.pth?download=1").to_yaml(configs / "Remote.yaml")
    (configs / "Broken.yaml").write_text("class_names: [")
    registry = ModelRegistry()
    models = {m.name: m for m in registry.list()}
    mito = models["MitoNet_v1"]
    assert mito.source == "empanada" and mito.installed and mito.builtin
    assert mito.weights_path == empanada / "MitoNet_v1.pth"
    assert mito.config.model == str(empanada / "MitoNet_v1.pth")
    mine = models["MyFinetuned"]
    assert mine.source == "empanada" and mine.installed and not mine.builtin
    remote = models["Remote"]
    assert not remote.installed and "NotDownloaded.pth" in remote.missing_weights_hint
    assert "Broken" not in models and any("Broken.yaml" in p for p in registry.problems)
    assert not any(paths.models_dir().iterdir())  # nothing copied
    with pytest.raises(RegistryError, match="empanada-napari"):
        registry.remove("MyFinetuned")
    adopted = registry.adopt("MyFinetuned", verify=FakeVerify())
    assert adopted.source == "user" and adopted.registered
    assert adopted.weights_path == paths.models_dir() / "MyFinetuned" / "MyFinetuned.pth"
    assert finetuned.exists()


def test_weights_bundled_by_an_installer_make_a_builtin_usable(monkeypatch, tmp_path):
    bundled = tmp_path / "models_weights"
    fake_torchscript(bundled / "MitoNet_v1_mini.pth")
    monkeypatch.setattr("empanada_desktop.core.registry_discovery.bundled_weights_dir", lambda: bundled)
    registry = ModelRegistry()
    models = {m.name: m for m in registry.list()}
    mini = models["MitoNet_v1_mini"]
    assert mini.source == "bundled" and mini.installed and mini.builtin
    assert mini.config.model == str(bundled / "MitoNet_v1_mini.pth")
    assert not models["MitoNet_v1"].installed  # only what was bundled
    with pytest.raises(RegistryError, match="built-in"):
        registry.remove("MitoNet_v1_mini")
    # empanada-napari's own download wins over the bundled copy.
    fake_torchscript(paths.empanada_user_dir() / "MitoNet_v1_mini.pth")
    assert registry.get("MitoNet_v1_mini").source == "empanada"
    # A finetuned model bundled as an empanada pair (model: relative to the folder).
    fake_torchscript(bundled / "SiteMito.pth")
    base = ModelConfig.from_yaml(Path(__file__).resolve().parents[2] / "resources/models/MitoNet_v1.yaml")
    base.with_model_path("SiteMito.pth").to_yaml(bundled / "SiteMito.yaml")
    site = registry.get("SiteMito")
    assert site.source == "bundled" and site.installed and site.weights_path == bundled / "SiteMito.pth"
    with pytest.raises(RegistryError, match="installed with the app"):
        registry.rename("SiteMito", "Other")


def test_damaged_model_folder_is_reported_not_fatal(tmp_path):
    (paths.models_dir() / "Stray").mkdir()
    registry = ModelRegistry()
    assert "Stray" not in registry.names()
    assert any("Stray" in p for p in registry.problems)


def test_resources_dir_in_a_frozen_app(monkeypatch, tmp_path):
    import sys

    from empanada_desktop.core import resources

    assert (resources.builtin_config_dir() / "MitoNet_v1.yaml").is_file()
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert resources.resources_dir() == tmp_path / "resources"
    assert resources.demo_dir() == tmp_path / "resources" / "demo"


def test_explicit_home(tmp_path):
    registry = ModelRegistry(home=tmp_path / "elsewhere")
    model = registry.import_weights(fake_torchscript(tmp_path / "m.pth"), "Mine", like="MitoNet_v1")
    assert model.weights_path == tmp_path / "elsewhere" / "models" / "Mine" / "Mine.pth"
    assert "Mine" not in ModelRegistry().names()
