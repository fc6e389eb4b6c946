"""Files the app writes honour the umask (0644 with umask 022), like a plain ``open`` would, so
colleagues and a napari in another account can read labels, training sets, models and configs.
A replaced file keeps its own permissions."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask():
    previous = os.umask(0o022)

    def set_mask(mask: int) -> None:
        os.umask(mask)

    yield set_mask
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _write_everything(root, tiny_model_name):
    from empanada_desktop.backend.finetune.checkpoints import save_checkpoint
    from empanada_desktop.backend.loading import load_registered
    from empanada_desktop.backend.torchscript import export_empanada
    from empanada_desktop.core.atomic import write_text
    from empanada_desktop.core.dataset import write_pair
    from empanada_desktop.core.imageio import write_tiff
    from empanada_desktop.core.model_export import export_pair
    from empanada_desktop.core.registry import ModelRegistry

    labels = write_tiff(root / "labels.tif", np.zeros((8, 8), np.int32))
    pair = write_pair(root / "set", "source", "patch", np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.int32))
    config = write_text(root / "config.yaml", "a: 1\n") or root / "config.yaml"
    checkpoint = save_checkpoint(root / "checkpoints" / "last.pt", {k: 0 for k in (
        "model", "optimizer", "scheduler", "scaler", "step", "config", "rng", "version")})
    model, model_config = load_registered(tiny_model_name)
    pth, yaml_path = export_empanada(model, model_config, root / "export", "exported")
    pair_pth, pair_yaml = export_pair(ModelRegistry().get(tiny_model_name), root / "napari")
    return [labels, pair.image, pair.mask, config, checkpoint, pth, yaml_path, pair_pth, pair_yaml]


def test_written_files_honour_the_umask(app_home, tmp_path, umask):
    from empanada_desktop.backend.loading import register_native_model

    register_native_model("tiny", architecture="PanopticDeepLabPR", encoder="resnet18", seed=0)
    registered = list((app_home / "models" / "tiny").iterdir())
    assert {path.name: _mode(path) for path in registered} == {path.name: 0o644 for path in registered}
    written = _write_everything(tmp_path / "a", "tiny")
    assert {str(p): _mode(p) for p in written} == {str(p): 0o644 for p in written}

    umask(0o077)
    private = _write_everything(tmp_path / "b", "tiny")
    assert {str(p): _mode(p) for p in private} == {str(p): 0o600 for p in private}


def test_a_replaced_file_keeps_its_permissions(tmp_path, umask):
    from empanada_desktop.core.atomic import write_text

    target = tmp_path / "shared.yaml"
    target.write_text("old\n")
    os.chmod(target, 0o664)
    write_text(target, "new\n")
    assert target.read_text() == "new\n" and _mode(target) == 0o664


def test_the_umask_is_read_without_changing_it(umask):
    from empanada_desktop.core.atomic import current_umask

    umask(0o027)
    assert current_umask() == 0o027
    assert current_umask() == 0o027
