"""Probes 3, 5 and 8: damaged registry entries are skipped with a warning and can be removed;
a rename killed at the wrong moment is put back at the next start."""

from __future__ import annotations

import json
import textwrap

import pytest
from reliability_helpers import leftovers, run_cli

from empanada_desktop.cli import main
from empanada_desktop.core.registry import ModelRegistry



def _damage(app_home, name, **fields):
    entry_path = app_home / "models" / name / "registry.json"
    entry = json.loads(entry_path.read_text())
    entry.update(fields)
    entry_path.write_text(json.dumps(entry))


@pytest.mark.parametrize("fields", [{"weights": 5}, {"size": "big"}, {"sha256": ["x"]}, {"source": None, "weights": []}])
def test_a_wrong_typed_field_is_skipped_with_a_warning(tiny, app_home, capsys, fields):
    from empanada_desktop.backend.loading import register_native_model

    register_native_model("other", architecture="PanopticDeepLabPR", encoder="resnet18", seed=1)
    _damage(app_home, "tiny", **fields)
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "other" in out and "warning:" in out and "registry.json is damaged" in out
    assert "models remove tiny" in out
    assert main(["models", "info", "other"]) == 0
    assert main(["models", "info", "tiny"]) == 2  # unknown now, one line
    assert "Traceback" not in capsys.readouterr().err


def test_the_app_starts_with_a_damaged_entry(tiny, app_home, qtbot):
    from empanada_desktop.ui.models.model_manager import ModelManagerDialog

    _damage(app_home, "tiny", weights=5)
    dialog = ModelManagerDialog()
    qtbot.addWidget(dialog)
    names = [dialog.models_list.item(i).text() for i in range(dialog.models_list.count())]
    assert names and not any(name.startswith("tiny") for name in names)


def test_a_damaged_model_can_be_removed_and_imported_again(tiny, app_home, tmp_path, capsys):
    weights = tmp_path / "tiny.pth"
    weights.write_bytes((app_home / "models" / "tiny" / "tiny.pth").read_bytes())
    (app_home / "models" / "tiny" / "registry.json").write_text("{not json")
    # Importing under the damaged folder's name says what is in the way and how to clear it.
    assert main(["models", "import", str(weights), "--name", "tiny", "--like", "MitoNet_v1"]) == 2
    err = capsys.readouterr().err
    assert "damaged model folder" in err and "models remove tiny" in err
    assert main(["models", "remove", "tiny"]) == 0
    assert not (app_home / "models" / "tiny").exists() and leftovers(app_home / "models") == []
    assert main(["models", "import", str(weights), "--name", "tiny", "--like", "MitoNet_v1"]) == 0
    assert ModelRegistry().get("tiny").installed


def test_remove_still_refuses_built_ins_and_unknown_names(app_home, capsys):
    assert main(["models", "remove", "MitoNet_v1"]) == 2
    assert "built-in" in capsys.readouterr().err
    assert main(["models", "remove", "nothing_here"]) == 2
    assert "Unknown model" in capsys.readouterr().err


# Kill the rename right after one of its steps, as a power cut would (no clean-up runs).
_KILL_RENAME = textwrap.dedent("""
    import os, signal, sys
    import empanada_desktop.core.registry as registry
    step = sys.argv[1]
    if step == "moved":
        registry.read_entry = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    else:
        real = registry.write_entry_json
        def write_then_die(path, entry):
            real(path, entry)
            os.kill(os.getpid(), signal.SIGKILL)
        registry.write_entry_json = write_then_die
    registry.ModelRegistry().rename("tiny", "renamed")
""")


@pytest.mark.parametrize("step", ["moved", "entry_written"])
def test_an_interrupted_rename_is_recovered_at_the_next_start(tiny, app_home, tmp_path, step):
    import subprocess
    import sys

    from reliability_helpers import REPO

    before = (app_home / "models" / "tiny" / "tiny.pth").read_bytes()
    script = tmp_path / "kill_rename.py"
    script.write_text(_KILL_RENAME)
    env = dict(__import__("os").environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, str(script), step], env=env, capture_output=True, text=True)
    assert result.returncode == -9, result.stderr
    models = app_home / "models"
    assert not (models / "tiny").exists() and not (models / "renamed").exists()
    assert [p.name.startswith(".staging-renamed-") for p in models.iterdir()] == [True]

    listed = run_cli("models", "list")  # the next start
    assert listed.returncode == 0, listed.stderr
    expected = "tiny" if step == "moved" else "renamed"
    model = ModelRegistry().get(expected)
    assert model.installed and model.weights_path.read_bytes() == before
    assert model.weights_path.name == f"{expected}.pth" and model.config_path.name == f"{expected}.yaml"
    assert sorted(p.name for p in (models / expected).iterdir()) == sorted(
        [f"{expected}.pth", f"{expected}.yaml", "registry.json"])
    assert leftovers(models) == []
    # And the model works again as usual: it can be renamed.
    ModelRegistry().rename(expected, "final")
    assert ModelRegistry().get("final").installed


def test_a_staging_folder_of_a_running_process_is_left_alone(tiny, app_home):
    import os

    staging = app_home / "models" / f".staging-new-{os.getpid()}-0123abcd"
    staging.mkdir()
    (staging / "registry.json").write_text(json.dumps({"name": "new", "weights": "new.pth"}))
    ModelRegistry()
    assert staging.exists()
