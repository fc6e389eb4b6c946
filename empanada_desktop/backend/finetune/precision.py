"""Mixed precision per device: what to autocast to and whether a gradient scaler is needed.

- CUDA: bfloat16 autocast where the GPU supports it (no scaler needed), else float16 with a
  ``GradScaler``.
- CPU: bfloat16 autocast where the CPU has native bf16 (AVX512-BF16 / AMX: oneDNN reports it),
  else float32 (``backend.cpu`` decides which CPUs have it). On the team's 2-core EPYC bf16 matrix products run at ~2.4x float32.
- MPS: float32 (fp16 autocast on MPS still misses kernels that PanopticDeepLab uses).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

from empanada_desktop.backend.devices import cpu_bf16_supported as cpu_has_bf16  # one answer for the app
from empanada_desktop.core.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    name: str  # "bf16", "fp16" or "fp32"
    device_type: str  # "cuda", "cpu", "mps"
    reason: str = ""

    @property
    def dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        device_type = self.device_type if self.device_type in ("cuda", "cpu", "mps") else "cuda"
        return torch.amp.GradScaler(device_type, enabled=self.needs_scaler)


def choose_precision(device: torch.device, requested: str = "auto") -> Precision:
    """Pick the precision for ``device``; an explicit request that cannot work raises ConfigError."""
    kind = device.type
    if kind == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            if bf16:
                return Precision("bf16", kind, "the GPU supports bfloat16")
            return Precision("fp16", kind, "the GPU lacks bfloat16; float16 with a gradient scaler")
        if requested == "bf16" and not bf16:
            raise ConfigError("precision bf16: this GPU does not support bfloat16; use fp16 or auto.")
        return Precision(requested, kind, "requested")
    if kind == "cpu":
        bf16 = cpu_has_bf16()
        if requested == "auto":
            if bf16:
                return Precision("bf16", kind, "the CPU has native bfloat16 (AVX512-BF16/AMX)")
            return Precision("fp32", kind, "the CPU has no native bfloat16")
        if requested == "fp16":
            raise ConfigError("precision fp16: not useful on a CPU; use bf16, fp32 or auto.")
        if requested == "bf16" and not bf16:
            log.warning("bf16 requested on a CPU without native bfloat16: it will be slow")
        return Precision(requested, kind, "requested")
    if kind == "mps":
        if requested not in ("auto", "fp32"):
            raise ConfigError(f"precision {requested}: use fp32 or auto on Apple GPUs (MPS).")
        return Precision("fp32", kind, "float32 on MPS")
    return Precision("fp32", kind, "unknown device type")
