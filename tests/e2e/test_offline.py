"""Offline guarantee: the app's main flows never try to reach the network.

Every test here runs with the socket layer replaced (``socket.socket.connect``/``connect_ex``,
``socket.create_connection``, ``getaddrinfo``, ``gethostbyname``): an attempt raises OSError *and*
is recorded, and the test fails on any recorded attempt, even one the code caught and survived
(a silent fallback after a failed download is still a bug for a machine without a network).
Local AF_UNIX sockets (multiprocessing, DataLoader workers) stay allowed.

Flows: open the demo stack in the main window and render every screen; ``models list``/``info``;
a tiny native model registered, then ``infer``, a 2-iteration ``finetune`` and ``models export``
through ``empanada_desktop.cli.main``.
"""

from __future__ import annotations

import socket
import traceback
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "resources" / "demo"


class NetworkAttempt(AssertionError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Block and record every network attempt; fail the test if there was any."""
    attempts: list[str] = []
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def record(what: str) -> OSError:
        stack = "".join(traceback.format_stack(limit=12)[:-2])
        attempts.append(f"{what}\n{stack}")
        return OSError(f"network access blocked by the offline test: {what}")

    def connect(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return original_connect(self, address)
        raise record(f"socket.connect({address!r})")

    def connect_ex(self, address):
        if self.family == getattr(socket, "AF_UNIX", None):
            return original_connect_ex(self, address)
        raise record(f"socket.connect_ex({address!r})")

    def refuse(name):
        def _refuse(*args, **kwargs):
            raise record(f"socket.{name}{args!r}")

        return _refuse

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    for name in ("create_connection", "getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        monkeypatch.setattr(socket, name, refuse(name))
    yield attempts
    if attempts:
        raise NetworkAttempt(f"{len(attempts)} network attempt(s); the first:\n{attempts[0]}")


def test_the_guard_itself_catches_and_records(no_network):
    import urllib.request

    with pytest.raises(OSError, match="blocked"):
        urllib.request.urlopen("http://example.org", timeout=1)
    assert no_network, "the attempt was not recorded"
    no_network.clear()  # the only test allowed to try
    left, right = socket.socketpair()  # local sockets still work
    left.close()
    right.close()


# --- helpers ---------------------------------------------------------------------------------


def require_command(name: str) -> None:
    from empanada_desktop.cli import _command_names, build_parser

    assert name in _command_names(build_parser()), f"the CLI has no '{name}' command"


def run_cli(*args: str) -> None:
    from empanada_desktop.cli import main

    status = main([str(a) for a in args])
    assert status == 0, f"empanada-desktop {' '.join(map(str, args))} exited {status}"


def demo_stack() -> Path:
    path = DEMO / "em_stack.tif"
    if not path.exists():
        pytest.fail("resources/demo/em_stack.tif is missing from the checkout")
    return path


def training_set(tmp_path: Path) -> Path:
    """The demo training set, or a tiny one in empanada's layout when the demo is not there yet."""
    demo = DEMO / "training_set"
    if demo.is_dir():
        return demo
    import tifffile

    root = tmp_path / "training_set"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    for source in ("stack_a", "stack_b"):
        (root / source / "images").mkdir(parents=True)
        (root / source / "masks").mkdir(parents=True)
        for index in range(4):
            image = rng.normal(110, 12, (128, 128))
            mask = np.zeros((128, 128), np.int32)
            for label in range(1, 4):
                cy, cx = rng.integers(20, 108, 2)
                inside = ((yy - cy) / 12.0) ** 2 + ((xx - cx) / 7.0) ** 2 < 1
                mask[inside] = label
                image[inside] = 190
            name = f"{source}_{index:02d}.tiff"
            tifffile.imwrite(root / source / "images" / name, np.clip(image, 0, 255).astype(np.uint8))
            tifffile.imwrite(root / source / "masks" / name, mask)
    return root


@pytest.fixture
def tiny_model(no_network):
    """A small native model (ResNet-18, random seeded weights), registered in the test's app home."""
    from empanada_desktop.backend.loading import register_native_model

    return register_native_model("offline_tiny", architecture="PanopticDeepLabPR", encoder="resnet18",
                                 like="MitoNet_v1", seed=0).name


# --- flows -----------------------------------------------------------------------------------


def test_models_list_and_info_offline(no_network, capsys):
    require_command("models")
    run_cli("models", "list")
    assert "MitoNet_v1" in capsys.readouterr().out
    run_cli("models", "info", "MitoNet_v1")


def test_open_demo_in_main_window_offline(no_network, qtbot, pyqtgraph_options):
    from empanada_desktop.ui.shell.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.open_path(demo_stack())
    assert window.document.image is not None and window.document.image.ndim == 3
    qtbot.wait(50)


def test_every_screen_renders_offline(no_network, qtbot, tmp_path):
    from empanada_desktop.ui.shell.screenshots import render_all

    written = render_all(tmp_path)
    assert written, "no screen was registered"
    assert all(path.stat().st_size > 0 for path in written)


def test_infer_offline(no_network, tiny_model, tmp_path):
    require_command("infer")
    out = tmp_path / "labels.tif"
    run_cli("infer", "--model", tiny_model, demo_stack(), "--output", out, "--device", "cpu")
    assert out.exists()


@pytest.mark.slow
def test_finetune_and_export_offline(no_network, tiny_model, tmp_path):
    require_command("finetune")
    run_cli(
        "finetune", "--model", tiny_model, "--train-dir", training_set(tmp_path),
        "--iterations", "2", "--batch-size", "2", "--patch-size", "128",
        "--new-name", "offline_finetuned", "--device", "cpu",
    )
    export_dir = tmp_path / "exported"
    run_cli("models", "export", "offline_finetuned", export_dir)
    assert (export_dir / "offline_finetuned.pth").is_file()
    assert (export_dir / "offline_finetuned.yaml").is_file()


@pytest.mark.slow
def test_train_new_model_offline(no_network, tmp_path):
    require_command("train")
    run_cli(
        "train", "--encoder", "resnet18", "--init", "random", "--train-dir", training_set(tmp_path),
        "--iterations", "2", "--batch-size", "2", "--patch-size", "64", "--name", "offline_new", "--device", "cpu",
    )
    export_dir = tmp_path / "exported"
    run_cli("models", "export", "offline_new", export_dir)
    assert (export_dir / "offline_new.pth").is_file()
