"""Compute devices: what this computer has, what can be used, and which to use.

``list_devices()`` reports every CUDA GPU (name, memory), Apple's MPS and the CPU (threads,
bfloat16 support), each with ``available`` and, when unavailable, a ``reason`` in words.
``resolve_device("auto")`` picks CUDA, then MPS, then the CPU; any other choice is honoured or
refused with the reason.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Literal

import torch

from empanada_desktop.backend.cpu import cpu_capability_info
from empanada_desktop.core.errors import ConfigError

log = logging.getLogger(__name__)

DeviceKind = Literal["cuda", "mps", "cpu"]


@dataclass(frozen=True)
class DeviceInfo:
    """One compute device.

    Attributes:
        id: what ``resolve_device`` accepts: "cuda:0", "mps", "cpu".
        name: a readable name ("NVIDIA H100 80GB HBM3", "Apple GPU (MPS)", "CPU (AVX-512 BF16)", the
            kind from ``backend.cpu``).
        available: whether it can be used now.
        reason: why not, in words ("" when available).
        memory_bytes: GPU memory, None for MPS (shared with the system) and the CPU.
        bf16: whether bfloat16 arithmetic is supported (and fast enough to be worth it on a CPU).
        threads: CPU threads torch uses; None for GPUs.
    """

    id: str
    name: str
    kind: DeviceKind
    available: bool
    reason: str = ""
    memory_bytes: int | None = None
    bf16: bool = False
    threads: int | None = None


def _cuda_devices() -> list[DeviceInfo]:
    if not torch.backends.cuda.is_built():
        return [DeviceInfo("cuda", "NVIDIA GPU (CUDA)", "cuda", False,
                           "this build of PyTorch has no CUDA support (install the CUDA build of PyTorch)")]
    try:
        available = torch.cuda.is_available()
        count = torch.cuda.device_count() if available else 0
    except Exception as error:  # a broken driver raises here
        return [DeviceInfo("cuda", "NVIDIA GPU (CUDA)", "cuda", False, f"the CUDA driver failed to start: {error}")]
    if not available or count == 0:
        return [DeviceInfo("cuda", "NVIDIA GPU (CUDA)", "cuda", False,
                           "no NVIDIA GPU found, or its driver is missing or too old for this PyTorch")]
    devices = []
    for index in range(count):
        try:
            props = torch.cuda.get_device_properties(index)
            name, memory = props.name, int(props.total_memory)
            bf16 = (props.major, props.minor) >= (8, 0)  # Ampere and later have bfloat16 units
        except Exception as error:
            devices.append(DeviceInfo(f"cuda:{index}", f"GPU {index}", "cuda", False, f"cannot be queried: {error}"))
            continue
        devices.append(DeviceInfo(f"cuda:{index}", name, "cuda", True, "", memory, bf16))
    return devices


def _mps_device() -> DeviceInfo:
    backend = getattr(torch.backends, "mps", None)
    if backend is None or not backend.is_built():
        reason = "Apple MPS exists only on Macs with Apple silicon or an AMD GPU (macOS 12.3 or later)"
        return DeviceInfo("mps", "Apple GPU (MPS)", "mps", False, reason)
    if not backend.is_available():
        return DeviceInfo("mps", "Apple GPU (MPS)", "mps", False,
                          "this Mac's macOS is older than 12.3 or it has no MPS-capable GPU")
    return DeviceInfo("mps", "Apple GPU (MPS)", "mps", True, "", None, True)


@functools.lru_cache(maxsize=1)
def cpu_bf16_supported() -> bool:
    """True when this CPU has native bfloat16 instructions and a bf16 matmul works.

    Without them (AVX512-BF16 or AMX on x86, the BF16 extension on ARM) bfloat16 is emulated and
    slower than float32, so it is reported as unsupported. The instructions come from
    ``backend.cpu.cpu_capability_info()``; ``finetune.precision.cpu_has_bf16`` is this function.
    """
    if not _native_cpu_bf16():
        return False
    try:
        a = torch.ones(8, 8, dtype=torch.bfloat16)
        return bool(torch.equal(a @ a, torch.full((8, 8), 8.0, dtype=torch.bfloat16)))
    except Exception as error:
        log.debug("bfloat16 matmul failed on the CPU: %s", error)
        return False


def _native_cpu_bf16() -> bool:
    return cpu_capability_info().native_bf16


def _cpu_device() -> DeviceInfo:
    kind = cpu_capability_info().kind
    name = f"CPU ({kind})" if kind not in ("unknown", "DEFAULT") else "CPU"
    return DeviceInfo("cpu", name, "cpu", True, "", None, cpu_bf16_supported(), torch.get_num_threads())


def list_devices() -> list[DeviceInfo]:
    """All devices, usable or not, GPUs first."""
    return [*_cuda_devices(), _mps_device(), _cpu_device()]


def resolve_device(choice: str = "auto") -> torch.device:
    """The ``torch.device`` for a user's choice.

    Args:
        choice: "auto" (CUDA, then MPS, then CPU), "cuda" (the first GPU), "cuda:N", "mps" or
            "cpu".

    Raises:
        ConfigError: unknown choice, or the chosen device is unavailable (with the reason).
    """
    choice = (choice or "auto").strip().lower()
    devices = list_devices()
    if choice == "auto":
        for kind in ("cuda", "mps", "cpu"):
            for device in devices:
                if device.kind == kind and device.available:
                    log.info("using %s (%s)", device.id, device.name)
                    return torch.device(device.id)
    if choice == "cuda":
        choice = "cuda:0"
    for device in devices:
        if choice == device.id or (device.id == "cuda" and choice.startswith("cuda:")):
            if not device.available:
                raise ConfigError(f"Device '{choice}' cannot be used: {device.reason}. Choose 'auto' or 'cpu'.")
            return torch.device(device.id)
    known = ", ".join(["auto", *(d.id for d in devices if d.available)])
    if choice.startswith("cuda:"):
        raise ConfigError(f"There is no GPU '{choice}' on this computer; choose one of: {known}.")
    raise ConfigError(f"Unknown device '{choice}'; choose one of: {known}.")
