"""float32 finetuning step options, side by side (benchmark, not a test).

One finetuning step of MitoNet_v1's architecture (random weights, fused encoder as released) in
float32 on the CPU, with each option the issue on CPUs without bfloat16 asked about:

- ``baseline``: the app's memory format for float32 on the CPU, frozen layers in float32;
- ``contiguous`` / ``channels_last``: model and batch in that memory format (the app used
  contiguous tensors on the CPU until channels-last measured faster in float32);
- ``frozen_int8``: the frozen encoder in int8 (what the app does, ``--frozen-int8 auto``);
- ``compile``: ``torch.compile`` of the model (inductor; its compile time reported apart);
- ``threads=N``: torch threads other than the default (one per core);
- options joined with ``+`` combine, e.g. ``channels_last+frozen_int8``.

    .venv/bin/python benchmarks/fp32_step_options.py --layers none --batch-size 16 --patch-size 256
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/fp32_step_options.py

(on an Intel CPU add ``MKL_ENABLE_INSTRUCTIONS=AVX2``, which caps MKL's float32 matrix products)

Prints the median seconds per step of ``--steps`` steps after ``--warmup`` and the first and
last loss (same seed and batch for every option, so losses show whether an option changes the
arithmetic).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from empanada_desktop.backend.cpu import cpu_capability_info  # noqa: E402


def run_option(option: str, args) -> dict:
    from empanada_desktop.backend.finetune.config import FinetuneConfig
    from empanada_desktop.backend.finetune.loop import synthetic_batch
    from empanada_desktop.backend.finetune.optim import make_optimizer
    from empanada_desktop.backend.finetune.precision import choose_precision
    from empanada_desktop.backend.finetune.trainer import Trainer
    from empanada_desktop.backend.loading import create_builtin_weights
    from empanada_desktop.core.registry import ModelRegistry

    parts = set(option.split("+"))
    threads = torch.get_num_threads()
    for part in parts:
        if part.startswith("threads="):
            torch.set_num_threads(int(part.split("=")[1]))
    model = create_builtin_weights("MitoNet_v1", seed=0)
    model_config = ModelRegistry().get("MitoNet_v1").config
    config = FinetuneConfig(model="MitoNet_v1", train_dirs=["unused"], new_name="bench", layers=args.layers,
                            batch_size=args.batch_size, patch_size=args.patch_size, device="cpu", precision="fp32",
                            frozen_int8="on" if "frozen_int8" in parts else "off", encoder_lr_scale=0.01,
                            grad_clip=1.0)
    device = torch.device("cpu")
    trainer = Trainer(model, model_config, config, device, choose_precision(device, "fp32"))
    batch = synthetic_batch(args.batch_size, args.patch_size, seed=0)
    compile_seconds = None
    for layout, memory_format in (("contiguous", torch.contiguous_format), ("channels_last", torch.channels_last)):
        if layout in parts:
            trainer.channels_last = layout == "channels_last"
            trainer.model = trainer.model.to(memory_format=memory_format)
            trainer.forward_module = trainer.model
    note = trainer.use_frozen_int8(batch.images) if "frozen_int8" in parts else ""
    if "compile" in parts:
        started = time.perf_counter()
        trainer.forward_module = torch.compile(trainer.model)
        compile_seconds = time.perf_counter() - started  # lazy: the real cost shows in the first step
    optimizer = make_optimizer(trainer.model, config.max_lr, config.weight_decay, config.encoder_lr_scale)
    scaler = trainer.precision.scaler()
    times, losses = [], []
    for index in range(args.warmup + args.steps):
        torch.manual_seed(index)
        started = time.perf_counter()
        result = trainer.train_step(batch, optimizer, scaler)
        elapsed = time.perf_counter() - started
        losses.append(result["total"])
        if index == 0 and "compile" in parts:
            compile_seconds = (compile_seconds or 0) + elapsed
        if index >= args.warmup:
            times.append(elapsed)
    torch.set_num_threads(threads)
    return {"option": option, "seconds": statistics.median(times), "first_loss": losses[0],
            "last_loss": losses[-1], "compile_seconds": compile_seconds, "note": note or ""}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="none")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--options", nargs="+",
                        default=["contiguous", "channels_last", "frozen_int8", "channels_last+frozen_int8", "threads=1",
                                 "compile"])
    args = parser.parse_args(argv)
    print(cpu_capability_info().line(), flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32; layers {args.layers}, "
          f"batch {args.batch_size}, {args.patch_size} px; median of {args.steps} steps after {args.warmup}")
    baseline = None
    for option in args.options:
        try:
            row = run_option(option, args)
        except Exception as error:  # noqa: BLE001 - one option failing (e.g. no compiler) is a result too
            print(f"  {option}: failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)
            continue
        baseline = baseline or row["seconds"]
        extra = f", first step incl. compiling {row['compile_seconds']:.1f} s" if row["compile_seconds"] else ""
        print(f"  {option}: {row['seconds']:.2f} s/step ({baseline / row['seconds']:.2f}x baseline); loss "
              f"{row['first_loss']:.4f} -> {row['last_loss']:.4f}{extra} {row['note']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
