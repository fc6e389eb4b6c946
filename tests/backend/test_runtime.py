"""Process-wide CPU settings applied by training and inference jobs."""

from __future__ import annotations

import torch

from empanada_desktop.backend import runtime


def test_tuning_flushes_denormals_and_is_applied_once(monkeypatch):
    monkeypatch.setattr(runtime, "_tuned", False)
    calls = []
    monkeypatch.setattr(runtime, "_keep_freed_memory_in_heap", lambda: calls.append(1))
    try:
        runtime.tune_cpu_runtime()
        runtime.tune_cpu_runtime()
        tiny = torch.tensor([1e-39], dtype=torch.float32)  # a denormal float32
        assert (tiny * 1.0).item() == 0.0
        assert len(calls) == (1 if runtime.sys.platform.startswith("linux") else 0)
    finally:
        torch.set_flush_denormal(False)
