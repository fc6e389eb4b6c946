"""Device listing and choice, with CUDA and MPS faked by monkeypatching torch."""

from __future__ import annotations

import types

import pytest
import torch

from empanada_desktop.backend import devices
from empanada_desktop.core.errors import ConfigError


def _fake_cuda(monkeypatch, gpus):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(gpus))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(gpus))
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda i: types.SimpleNamespace(name=gpus[i][0], total_memory=gpus[i][1], major=gpus[i][2], minor=0),
    )


def _fake_mps(monkeypatch, built, available):
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: built)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: available)


def test_cpu_is_always_listed_and_available():
    cpu = [d for d in devices.list_devices() if d.kind == "cpu"]
    assert len(cpu) == 1 and cpu[0].available and cpu[0].id == "cpu"
    assert cpu[0].threads == torch.get_num_threads()
    assert isinstance(cpu[0].bf16, bool)


def test_cpu_bf16_needs_native_instructions(monkeypatch):
    devices.cpu_bf16_supported.cache_clear()
    monkeypatch.setattr(devices, "_native_cpu_bf16", lambda: False)
    try:
        assert devices.cpu_bf16_supported() is False
        devices.cpu_bf16_supported.cache_clear()
        monkeypatch.setattr(devices, "_native_cpu_bf16", lambda: True)
        assert devices.cpu_bf16_supported() is True  # and the bf16 matmul check passes
    finally:
        devices.cpu_bf16_supported.cache_clear()


def test_gpus_are_listed_with_name_and_memory_and_auto_prefers_cuda(monkeypatch):
    _fake_cuda(monkeypatch, [("NVIDIA A100", 40 * 2**30, 8), ("Quadro P4000", 8 * 2**30, 6)])
    _fake_mps(monkeypatch, built=False, available=False)
    listed = {d.id: d for d in devices.list_devices()}
    assert listed["cuda:0"].name == "NVIDIA A100" and listed["cuda:0"].memory_bytes == 40 * 2**30
    assert listed["cuda:0"].bf16 and not listed["cuda:1"].bf16
    assert devices.resolve_device("auto") == torch.device("cuda:0")
    assert devices.resolve_device("cuda:1") == torch.device("cuda:1")
    assert devices.resolve_device("cuda") == torch.device("cuda:0")
    assert devices.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no GPU 'cuda:5'"):
        devices.resolve_device("cuda:5")


def test_auto_prefers_mps_over_cpu(monkeypatch):
    _fake_cuda(monkeypatch, [])
    _fake_mps(monkeypatch, built=True, available=True)
    assert devices.resolve_device("auto") == torch.device("mps")
    assert devices.resolve_device("MPS") == torch.device("mps")


def test_unavailable_choices_say_why(monkeypatch):
    _fake_cuda(monkeypatch, [])
    _fake_mps(monkeypatch, built=True, available=False)
    listed = {d.kind: d for d in devices.list_devices()}
    assert not listed["cuda"].available and "NVIDIA" in listed["cuda"].reason
    assert not listed["mps"].available and "macOS" in listed["mps"].reason
    assert devices.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="cannot be used: no NVIDIA GPU"):
        devices.resolve_device("cuda")
    with pytest.raises(ConfigError, match="mps.*macOS"):
        devices.resolve_device("mps")


def test_cuda_missing_from_the_build_is_explained(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "is_built", lambda: False)
    cuda = [d for d in devices.list_devices() if d.kind == "cuda"][0]
    assert not cuda.available and "no CUDA support" in cuda.reason


def test_unknown_choice_lists_the_usable_ones(monkeypatch):
    _fake_cuda(monkeypatch, [])
    _fake_mps(monkeypatch, built=False, available=False)
    with pytest.raises(ConfigError, match="auto, cpu"):
        devices.resolve_device("tpu")


@pytest.mark.gpu
def test_a_real_gpu_is_found_and_chosen():
    assert devices.resolve_device("auto").type == "cuda"
    gpu = [d for d in devices.list_devices() if d.kind == "cuda"][0]
    assert gpu.available and gpu.memory_bytes > 0
