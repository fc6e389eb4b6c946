"""``empanada-desktop finetune``: finetune a registered model headless, with a progress bar.

Ctrl-C asks the run to stop after the current step; it saves a checkpoint and prints the
``--resume`` command. A second Ctrl-C aborts at once (the last checkpoint stays usable).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path

from empanada_desktop.backend.finetune.config import LAYER_CHOICES, PRECISIONS, default_of

EXIT_STOPPED = 130
EXIT_UNHEALTHY = 3  # the health monitor stopped a blow-up and rolled back


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="finetune a model on your labelled patches (empanada training-set layout)",
        description=(
            "Finetune a registered model (e.g. MitoNet_v1) on one or more training folders in "
            "empanada's layout (<source>/images/*.tiff + <source>/masks/*.tiff) and register the "
            "result under --name. Iterations are optimiser steps."
        ),
    )
    parser.add_argument("--model", help="registered model to start from (see 'models list')")
    parser.add_argument("--train", "--train-dir", dest="train", type=Path, action="append", default=[], metavar="DIR",
                        help="training folder; repeat for several")
    parser.add_argument("--val", "--val-dir", dest="val", type=Path, metavar="DIR", help="validation folder (same layout)")
    parser.add_argument("--layers", choices=LAYER_CHOICES, default=default_of("layers"),
                        help=f"encoder stages to train (default {default_of('layers')}; stage4 is a good trade-off)")
    parser.add_argument("--iterations", type=int, default=default_of("iterations"),
                        help=f"optimiser steps (default {default_of('iterations')})")
    parser.add_argument("--patch-size", type=int, default=default_of("patch_size"),
                        help=f"training patch side in px (default {default_of('patch_size')})")
    parser.add_argument("--batch-size", type=int, default=default_of("batch_size"),
                        help=f"patches per step (default {default_of('batch_size')})")
    parser.add_argument("--device", default=default_of("device"),
                        help=f"auto, cpu, cuda, cuda:N or mps (default {default_of('device')})")
    parser.add_argument("--name", "--new-name", dest="new_name", help="name of the finetuned model")
    parser.add_argument("--out", type=Path, metavar="RUN_DIR", help="run folder (default: app home/runs/NAME-time)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue a stopped run")
    parser.add_argument("--seed", type=int, default=default_of("seed"), help=f"random seed (default {default_of('seed')})")
    parser.add_argument("--precision", choices=PRECISIONS, default=default_of("precision"))
    parser.add_argument("--checkpoint-every", type=int, default=default_of("checkpoint_every"), metavar="N",
                        help=f"save every N steps (default {default_of('checkpoint_every')})")
    parser.add_argument("--frozen-int8", choices=("auto", "on", "off"), default=default_of("frozen_int8"),
                        help="run the frozen encoder layers in int8 (auto: on a CPU training in float32, "
                             "or in bf16 where VNNI makes int8 faster)")
    parser.add_argument("--max-lr", type=float, default=default_of("max_lr"),
                        help=f"peak learning rate of the one-cycle schedule (default {default_of('max_lr')})")
    parser.add_argument("--encoder-lr-scale", type=float, default=default_of("encoder_lr_scale"), metavar="F",
                        help="the encoder trains at F x the learning rate (default: 0.01 for encoders without "
                             "batch norms, such as MitoNet_v1's fused one, else 1)")
    parser.add_argument("--grad-clip", type=float, default=default_of("grad_clip"), metavar="NORM",
                        help="clip the gradient norm (0: off; default: 1 for encoders without batch norms, else off)")
    parser.add_argument("--health-every", type=int, default=default_of("health_every"), metavar="N",
                        help=f"measure the encoder's output scale every N steps (default {default_of('health_every')})")
    parser.add_argument("--no-health-check", dest="health_check", action="store_false",
                        help="do not stop and roll back when training blows up (not recommended)")
    parser.add_argument("--duplicate-patches", action="store_true",
                        help="allow fewer images than the batch size by repeating patches")
    parser.add_argument("--no-register", dest="register", action="store_false",
                        help="only export NAME.pth/.yaml into the run folder")
    parser.set_defaults(handler=run_finetune)


def _config_from_args(args: argparse.Namespace):
    from empanada_desktop.backend.finetune.config import FinetuneConfig
    from empanada_desktop.backend.finetune.run_folder import resume_config
    from empanada_desktop.core.errors import ConfigError

    if args.resume is not None:
        return resume_config(args.resume, device=args.device)
    missing = [flag for flag, value in (("--model", args.model), ("--train", args.train), ("--name", args.new_name))
               if not value]
    if missing:
        raise ConfigError(f"finetune needs {', '.join(missing)} (or --resume RUN_DIR to continue a run).")
    return FinetuneConfig(
        model=args.model,
        train_dirs=tuple(args.train),
        val_dir=args.val,
        layers=args.layers,
        iterations=args.iterations,
        patch_size=args.patch_size,
        batch_size=args.batch_size,
        device=args.device,
        new_name=args.new_name,
        out_dir=args.out,
        seed=args.seed,
        precision=args.precision,
        checkpoint_every=args.checkpoint_every,
        max_lr=args.max_lr,
        encoder_lr_scale=args.encoder_lr_scale,
        grad_clip=args.grad_clip,
        health_check=args.health_check,
        health_every=args.health_every,
        frozen_int8=args.frozen_int8,
        duplicate_patches=args.duplicate_patches,
        register=args.register,
    )


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def progress_line(step: int, total: int, loss: float | None, seconds_per_step: float | None,
                  eta: float | None, width: int = 24) -> str:
    filled = int(width * step / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    loss_text = f"loss {loss:.4f}" if loss is not None else ""
    speed = f"{seconds_per_step:.2f} s/it" if seconds_per_step else ""
    return f"[{bar}] {step}/{total} {loss_text} {speed} ETA {format_seconds(eta)}"


class _StopOnInterrupt:
    """First Ctrl-C: ask the loop to stop after the current step. Second: KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self._previous = None
        self._first = 0.0

    def __call__(self) -> bool:
        return self.requested.is_set()

    def _handle(self, signum, frame) -> None:
        if self.requested.is_set():
            # Under torchrun the terminal's Ctrl-C reaches each process, and torchrun forwards its
            # own copy a moment later: that second one is not a second Ctrl-C.
            if os.environ.get("WORLD_SIZE", "1") != "1" and time.monotonic() - self._first < 3.0:
                return
            raise KeyboardInterrupt
        self._first = time.monotonic()
        self.requested.set()
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)...",
              file=sys.stderr, flush=True)

    def __enter__(self) -> _StopOnInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def run_finetune(args: argparse.Namespace, stop=None) -> int:
    return drive(_config_from_args(args), stop, command="finetune")


def drive(config, stop=None, *, command: str = "finetune") -> int:
    """Run the loop for ``config`` (finetune or train) with a progress bar; the exit status.

    Under torchrun every process runs this; rank 0 prints, the others stay quiet.
    """
    from empanada_desktop.backend import distributed

    with distributed.session(config.device):
        if distributed.is_main():
            return _drive(config, stop, command, sys.stderr)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            return _drive(config, stop, command, quiet)


def _drive(config, stop, command: str, stream) -> int:
    from empanada_desktop.backend.events import CheckpointSaved, Message, Progress, Validated
    from empanada_desktop.backend.finetune.loop import finetune

    interactive = stream.isatty()
    stop_file = os.environ.get("EMPANADA_DESKTOP_STOP_FILE")  # the app's launcher stops torchrun runs so
    with _StopOnInterrupt() as interrupt:
        asked = (lambda: interrupt() or stop()) if stop is not None else interrupt
        should_stop = (lambda: asked() or Path(stop_file).exists()) if stop_file else asked
        events = finetune(config, should_stop)
        last_line = 0.0
        while True:
            try:
                event = next(events)
            except StopIteration as finished:
                result = finished.value
                break
            if isinstance(event, Progress):
                line = progress_line(event.step, event.total, event.losses.get("total"), event.seconds_per_step,
                                     event.eta_seconds)
                now = time.monotonic()
                if interactive:
                    print("\r" + line, end="", file=stream, flush=True)
                elif now - last_line > 5 or event.step == event.total or event.step == 1:
                    print(line, file=stream, flush=True)
                    last_line = now
            elif isinstance(event, Validated):
                label = "baseline" if event.baseline else f"step {event.step}"
                metrics = ", ".join(f"{k} {v:.3f}" for k, v in event.metrics.items())
                print(("\n" if interactive else "") + f"validation ({label}): {metrics}", file=stream, flush=True)
            elif isinstance(event, Message):
                prefix = "warning: " if event.level == "warning" else ""
                print(("\n" if interactive else "") + prefix + event.text, file=stream, flush=True)
            elif isinstance(event, CheckpointSaved) and event.kind == "stop":
                print(f"\ncheckpoint saved: {event.path}", file=stream, flush=True)
    if interactive:
        print(file=stream)
    if result.stopped and getattr(result, "health_problem", None):
        print(f"run folder: {result.run_dir}", file=stream)
        return EXIT_UNHEALTHY
    if result.stopped:
        print(f"stopped after step {result.steps_done}; resume with:\n  empanada-desktop {command} --resume "
              f"{result.run_dir}", file=stream)
        return EXIT_STOPPED
    baseline = result.baseline_metrics
    final = result.final_metrics
    if final:
        names = sorted(set(baseline) | set(final))
        rows = [f"  {name:>4}: {baseline.get(name, float('nan')):.3f} -> {final.get(name, float('nan')):.3f}"
                for name in names]
        print("validation before -> after:\n" + "\n".join(rows))
    print(f"{'finetuned' if command == 'finetune' else 'new'} model: {result.model_name}")
    print(f"files: {result.exported_pth} and {result.exported_yaml}")
    print(f"run folder: {result.run_dir}")
    return 0
