"""Counting the floating-point operations torch runs, to turn seconds into GFLOP/s.

``count_flops(fn, *args)`` runs ``fn`` once under ``torch.utils.flop_counter.FlopCounterMode`` and
returns what it counted: matrix products and convolutions (2 operations per multiply-add), in
the forward and in any backward run inside ``fn``. Element-wise work (activations, batch norm,
losses) is not counted; in a CNN it is a small share of the arithmetic, though not of the time.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.flop_counter import FlopCounterMode


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Operations counted while ``fn(*args, **kwargs)`` runs (works for TorchScript modules too)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def gflops_per_second(flops: float, seconds: float) -> float:
    return flops / seconds / 1e9 if seconds > 0 else float("nan")
