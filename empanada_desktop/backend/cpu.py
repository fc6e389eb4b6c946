"""What this CPU can do: its model, cores, the vector instructions that decide torch's speed.

``cpu_capability_info()`` (cached) returns a frozen ``CpuCapability``. On Linux the flags come from
``/proc/cpuinfo`` through ``parse_cpuinfo`` (pure, so tests feed it sample text); elsewhere only
torch's own capability string is known and the ``kind`` label is derived from it. Native bfloat16
(``native_bf16``) is the one answer the app uses for "is bf16 worth it on this CPU":
``devices.cpu_bf16_supported`` and ``finetune.precision.cpu_has_bf16`` both read it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
from dataclasses import dataclass

import torch

# The x86 flags that change which kernels torch and oneDNN pick; "bf16" is ARM's bfloat16 extension.
FLAGS_THAT_MATTER = (
    "avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile", "bf16",
)
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclass(frozen=True)
class CpuInfoText:
    """What ``parse_cpuinfo`` finds in the text of ``/proc/cpuinfo``."""

    model: str
    flags: frozenset[str]  # only FLAGS_THAT_MATTER
    physical_cores: int | None  # None when the text has no "physical id"/"core id" pairs
    logical_cores: int


@dataclass(frozen=True)
class CpuCapability:
    """This CPU as far as torch's speed is concerned.

    Attributes:
        model: the processor's name ("AMD EPYC", "Intel(R) Xeon(R) Platinum 8480+").
        physical_cores / logical_cores: cores and hardware threads (None when unknown).
        flags: the FLAGS_THAT_MATTER this CPU has (empty where they cannot be read).
        torch_capability: ``torch.backends.cpu.get_cpu_capability()`` ("AVX2", "AVX512", ...).
        native_bf16: bfloat16 runs on native instructions (AVX512-BF16, AMX or ARM BF16), so it is
            faster than float32; without them torch emulates it, slower than float32.
    """

    model: str
    physical_cores: int | None
    logical_cores: int | None
    flags: frozenset[str]
    torch_capability: str
    native_bf16: bool

    @property
    def kind(self) -> str:
        return kind_of(self.flags, self.torch_capability)

    def has(self, flag: str) -> bool:
        return flag in self.flags

    def line(self) -> str:
        """One line for logs and benchmark headers."""
        cores = f"{self.physical_cores or '?'} cores / {self.logical_cores or '?'} threads"
        flags = " ".join(f for f in FLAGS_THAT_MATTER if f in self.flags) or "flags unknown"
        bf16 = "native bf16" if self.native_bf16 else "no native bf16 (emulated, slow)"
        return (f"CPU {self.kind}: {self.model}, {cores}; torch capability {self.torch_capability}; "
                f"{flags}; {bf16}")

    def to_dict(self) -> dict:
        return {
            "model": self.model, "kind": self.kind, "physical_cores": self.physical_cores,
            "logical_cores": self.logical_cores, "torch_capability": self.torch_capability,
            "flags": sorted(self.flags), "native_bf16": self.native_bf16,
        }


def parse_cpuinfo(text: str) -> CpuInfoText:
    """Model name, relevant flags and core counts from the text of Linux's ``/proc/cpuinfo``.

    x86 lists instruction sets under ``flags``, ARM under ``Features``; the first processor's
    list is taken (all cores of a machine have the same).
    """
    model = ""
    flags: frozenset[str] | None = None
    cores: set[tuple[str, str]] = set()
    logical = 0
    physical_id = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor":
            logical += 1
        elif key in ("model name", "cpu model", "hardware") and not model:
            model = value
        elif key in ("flags", "features") and flags is None:
            flags = frozenset(value.split()) & frozenset(FLAGS_THAT_MATTER)
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    return CpuInfoText(model, flags or frozenset(), len(cores) or None, logical)


def kind_of(flags: frozenset[str], torch_capability: str = "") -> str:
    """A short label: "AMX", "AVX-512 BF16", "AVX-512", "AVX2", else torch's capability string."""
    if flags & {"amx_bf16", "amx_int8", "amx_tile"}:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX-512 BF16"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    named = {"AVX512": "AVX-512", "AVX2": "AVX2"}
    return named.get(torch_capability.upper(), torch_capability or "unknown")


def _torch_capability() -> str:
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - only informative
        return "unknown"


def _onednn_bf16() -> bool | None:
    """oneDNN's own check (x86: AVX512-BF16/AMX; ARM: BF16); a private op, so None if it fails."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001
        return None


def _read_cpuinfo() -> CpuInfoText | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            return parse_cpuinfo(handle.read(2_000_000))
    except OSError:
        return None


def _core_counts() -> tuple[int | None, int | None]:
    try:
        import psutil

        return psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    except Exception:  # noqa: BLE001 - psutil missing or unable on this system
        return None, os.cpu_count()


def detect_cpu(cpuinfo: CpuInfoText | None, torch_capability: str, onednn_bf16: bool | None,
               cores: tuple[int | None, int | None] = (None, None)) -> CpuCapability:
    """Combine what was read (``cores``: physical, logical from psutil); pure, so tests can give
    any machine. oneDNN's bf16 answer wins over the flags when it has one."""
    physical, logical = cores
    flags = cpuinfo.flags if cpuinfo else frozenset()
    if cpuinfo:
        physical = cpuinfo.physical_cores or physical
        logical = cpuinfo.logical_cores or logical
    native = onednn_bf16 if onednn_bf16 is not None else bool(flags & _NATIVE_BF16_FLAGS)
    model = (cpuinfo.model if cpuinfo else "") or platform.processor() or platform.machine() or "unknown CPU"
    return CpuCapability(model, physical, logical, flags, torch_capability, native)


_ABOVE_AVX2 = frozenset({"avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile"})


def capped_to_avx2(environ=os.environ) -> bool:
    """True when torch and oneDNN are told to use at most AVX2 (``ATEN_CPU_CAPABILITY=avx2`` and
    ``ONEDNN_MAX_CPU_ISA=AVX2``): how an AVX-512 machine stands in for an AVX2-only one. On an
    Intel CPU, MKL's float32 matrix products also need ``MKL_ENABLE_INSTRUCTIONS=AVX2``."""
    aten = environ.get("ATEN_CPU_CAPABILITY", "").lower()
    onednn = environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return aten in ("avx2", "default") and onednn.startswith(("AVX2", "AVX", "SSE"))


def apply_cap(cpu: CpuCapability, capped: bool) -> CpuCapability:
    """``cpu`` as the capped torch sees it: no flag above AVX2, no native bf16."""
    if not capped:
        return cpu
    return dataclasses.replace(cpu, flags=cpu.flags - _ABOVE_AVX2, native_bf16=False,
                               model=f"{cpu.model} (capped to AVX2 by ATEN_CPU_CAPABILITY/ONEDNN_MAX_CPU_ISA)")


@functools.lru_cache(maxsize=1)
def cpu_capability_info() -> CpuCapability:
    """This machine's CPU (read once), as capped by the environment (``capped_to_avx2``)."""
    cpu = detect_cpu(_read_cpuinfo(), _torch_capability(), _onednn_bf16(), _core_counts())
    return apply_cap(cpu, capped_to_avx2())
