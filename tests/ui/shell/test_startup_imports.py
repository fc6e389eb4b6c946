"""Starting the main window imports no torch (it takes seconds); jobs import it when they run."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import sys
from PySide6.QtWidgets import QApplication
from empanada_desktop.ui.shell.main_window import MainWindow
from empanada_desktop.ui.shell.theme import configure_pyqtgraph

app = QApplication([])
configure_pyqtgraph()
window = MainWindow()
window.show()
app.processEvents()
window.open_finetune_wizard()
window.open_model_manager()
app.processEvents()
loaded = sorted(name for name in sys.modules if name == "torch" or name.startswith("torch."))
print("TORCH:" + ",".join(loaded[:5]))
"""


def test_main_window_and_wizard_open_without_torch(app_home):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", EMPANADA_DESKTOP_HOME=str(app_home))
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH:\n" in result.stdout, result.stdout
