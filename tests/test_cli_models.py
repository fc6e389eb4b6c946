"""``empanada-desktop models ...`` and ``devices``, run in-process through cli.main."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from empanada_desktop.cli import main
from empanada_desktop.core import paths
from empanada_desktop.core.model_config import ModelConfig
from empanada_desktop.core.registry import ModelRegistry

# torch 2.14 announces TorchScript's deprecation on every script/load; empanada still needs it.
pytestmark = pytest.mark.filterwarnings("ignore:.*is deprecated.*:FutureWarning")

HAS_TORCHSCRIPT_BACKEND = importlib.util.find_spec("empanada_desktop.backend.torchscript") is not None


def _tiny_torchscript(path: Path) -> Path:
    """A scripted module with empanada's forward contract (section 3), a few hundred parameters."""
    torch = pytest.importorskip("torch")
    from typing import Dict

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x, render_steps: int = 2, interpolate_ins: bool = True) -> Dict[str, torch.Tensor]:
            y = self.conv(x)
            return {"sem_logits": y[:, :1], "ctr_hmp": torch.sigmoid(y[:, 1:2]), "offsets": y[:, 2:4]}

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Tiny().eval()).save(str(path))
    return path


@pytest.fixture
def torchscript_backend(monkeypatch):
    """The real backend.torchscript when it exists; else a stand-in whose verify loads the file."""
    if HAS_TORCHSCRIPT_BACKEND:
        return importlib.import_module("empanada_desktop.backend.torchscript")
    torch = pytest.importorskip("torch")
    from empanada_desktop.core.errors import ModelLoadError

    def verify_model_file(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise ModelLoadError(f"{path} does not load: {error}") from None
        return {"parameters": sum(p.numel() for p in module.parameters()), "format": "torchscript"}

    stand_in = types.ModuleType("empanada_desktop.backend.torchscript")
    stand_in.verify_model_file = verify_model_file
    monkeypatch.setitem(sys.modules, stand_in.__name__, stand_in)
    return stand_in


def test_list_shows_builtins_and_missing_weights(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("MitoNet_v1", "MitoNet_v1_mini", "NucleoNet_base_v2", "DropNet_base_v1"):
        assert name in out
    assert "weights not installed: import MitoNet_v1.pth" in out


def test_info_and_unknown_name(capsys):
    assert main(["models", "info", "MitoNet_v1_mini"]) == 0
    out = capsys.readouterr().out
    assert "padding factor: 128" in out and "classes: 1: mito" in out and "kind: instance" in out
    assert main(["models", "info", "NoSuchNet"]) == 2
    err = capsys.readouterr().err
    assert "Unknown model 'NoSuchNet'" in err and "MitoNet_v1" in err


def test_missing_action_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["models"])
    assert info.value.code == 2


def test_import_non_model_and_truncated_files_fail_cleanly(tmp_path, capsys, torchscript_backend):
    text = tmp_path / "notes.pth"
    text.write_text("not a model")
    good = _tiny_torchscript(tmp_path / "good.pth")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    before = sorted(paths.models_dir().rglob("*"))
    for bad in (text, truncated):
        assert main(["models", "import", str(bad), "--name", "Bad", "--like", "MitoNet_v1"]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err
    assert sorted(paths.models_dir().rglob("*")) == before
    assert "Bad" not in ModelRegistry().names()


def test_import_real_torchscript_then_export_rename_remove(tmp_path, capsys, torchscript_backend):
    torch = pytest.importorskip("torch")
    source = _tiny_torchscript(tmp_path / "tiny.pth")
    assert main(["models", "import", str(source), "--name", "Tiny", "--like", "MitoNet_v1"]) == 0
    assert "imported Tiny" in capsys.readouterr().out
    tiny = ModelRegistry().get("Tiny")
    assert tiny.installed and tiny.parameters == 40  # conv 1->4, 3x3, with bias
    out_dir = tmp_path / "exported"
    assert main(["models", "export", "Tiny", str(out_dir)]) == 0
    config = ModelConfig.from_yaml(out_dir / "Tiny.yaml")
    assert Path(config.model) == (out_dir / "Tiny.pth").resolve()
    loaded = torch.jit.load(config.model)
    result = loaded(torch.zeros(1, 1, 256, 256))
    assert set(result) >= {"sem_logits", "ctr_hmp", "offsets"}
    assert result["sem_logits"].shape == (1, 1, 256, 256)
    # A second export into the same folder needs --force.
    assert main(["models", "export", "Tiny", str(out_dir)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["models", "export", "Tiny", str(out_dir), "--force"]) == 0
    assert main(["models", "rename", "Tiny", "Tiny2"]) == 0
    assert main(["models", "remove", "Tiny2"]) == 0
    assert "Tiny2" not in ModelRegistry().names()


def test_export_builtin_without_weights_is_a_user_error(tmp_path, capsys):
    assert main(["models", "export", "MitoNet_v1", str(tmp_path / "out")]) == 2
    assert "MitoNet_v1.pth" in capsys.readouterr().err
    assert not (tmp_path / "out" / "MitoNet_v1.yaml").exists()


def test_remove_builtin_and_rename_errors(capsys):
    assert main(["models", "remove", "MitoNet_v1"]) == 2
    assert "built-in" in capsys.readouterr().err
    assert main(["models", "rename", "NoSuch", "Other"]) == 2


@pytest.mark.skipif(
    importlib.util.find_spec("empanada_desktop.backend.devices") is None,
    reason="backend.devices not written yet",
)
def test_devices_lists_the_cpu(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "cpu" in out.lower() and "available" in out


@pytest.mark.skipif(not HAS_TORCHSCRIPT_BACKEND, reason="backend.torchscript not written yet")
def test_real_backend_verify_is_what_the_cli_uses(tmp_path, capsys):
    from empanada_desktop.backend.torchscript import verify_model_file

    info = verify_model_file(_tiny_torchscript(tmp_path / "tiny.pth"))
    assert info["parameters"] == 40
