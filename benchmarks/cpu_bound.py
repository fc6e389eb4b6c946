"""This CPU's capability and its measured matrix and convolution throughput (benchmark, not a test).

Prints the CPU capability line (``backend.cpu``), then measures with the torch thread count the
app uses (torch's default; ``--threads`` to change it):

- fp32 and bf16 matmul, 2048 x 2048 x 2048;
- fp32 and bf16 3x3 conv2d, 256 -> 256 channels, 64 x 64, batch 16, padding 1, in torch's
  default (NCHW) layout and in channels_last;
- int8 matmul 2048 x 2048 x 2048 through ``torch._int_mm`` (int8 x int8 -> int32, the integer
  product torch's int8 paths use), counted in GOP/s.

Each number is the best of a few timed runs after warm-up, in GFLOP/s (2 operations per
multiply-add). bf16 rows are marked "emulated/slow" when the CPU has no native bf16. The
"bound" of a precision is the highest of its rows: the most this machine was seen to do in it.
``finetune_speed.py`` and ``inference_speed.py`` report their model steps as a fraction of it.

    python benchmarks/cpu_bound.py                      # prints one JSON object
    python benchmarks/cpu_bound.py --json bound.json    # also writes it
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from empanada_desktop.backend.cpu import cpu_capability_info  # noqa: E402
from empanada_desktop.backend.flops import gflops_per_second  # noqa: E402
from empanada_desktop.backend.runtime import tune_cpu_runtime  # noqa: E402

MATMUL = 2048
CONV = {"batch": 16, "channels": 256, "size": 64, "kernel": 3}
INT8_PATH = "torch._int_mm (int8 x int8 -> int32)"


def best_seconds(fn, warmup: int = 1, repeats: int = 5, budget_s: float = 6.0) -> float:
    """Fastest of up to ``repeats`` timed calls after ``warmup`` calls; stops early (after at
    least two) once ``budget_s`` is spent, so emulated bf16 does not take minutes."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < repeats and (len(times) < 2 or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_gflops(dtype: torch.dtype, **timing) -> float:
    a = torch.randn(MATMUL, MATMUL).to(dtype)
    b = torch.randn(MATMUL, MATMUL).to(dtype)
    return gflops_per_second(2 * MATMUL**3, best_seconds(lambda: torch.mm(a, b), **timing))


def conv_flops() -> int:
    c, s, k = CONV["channels"], CONV["size"], CONV["kernel"]
    return 2 * CONV["batch"] * c * c * k * k * s * s  # padding 1 keeps 64 x 64


def conv_gflops(dtype: torch.dtype, channels_last: bool, **timing) -> float:
    c, s, k = CONV["channels"], CONV["size"], CONV["kernel"]
    x = torch.randn(CONV["batch"], c, s, s).to(dtype)
    w = torch.randn(c, c, k, k).to(dtype) * 0.02
    if channels_last:
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = best_seconds(lambda: F.conv2d(x, w, padding=k // 2), **timing)
    return gflops_per_second(conv_flops(), seconds)


def int8_matmul_gops(**timing) -> float | None:
    a = torch.randint(-127, 128, (MATMUL, MATMUL), dtype=torch.int8)
    b = torch.randint(-127, 128, (MATMUL, MATMUL), dtype=torch.int8)
    try:
        return gflops_per_second(2 * MATMUL**3, best_seconds(lambda: torch._int_mm(a, b), **timing))
    except (RuntimeError, AttributeError, NotImplementedError) as error:
        print(f"int8 matmul unavailable: {error}", file=sys.stderr)
        return None


def measure(threads: int | None = None, repeats: int = 5, quick: bool = False) -> dict:
    """The capability and the throughput rows, as one JSON-ready dict."""
    tune_cpu_runtime()  # as the app's jobs do
    if threads:
        torch.set_num_threads(threads)
    cpu = cpu_capability_info()
    timing = {"warmup": 1, "repeats": 2 if quick else repeats, "budget_s": 2.0 if quick else 6.0}
    rows: dict[str, dict] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if name == "bf16" and not cpu.native_bf16:
            # Emulated bf16 runs at a few GFLOP/s: one call of the convolution takes minutes (seen
            # under the AVX2 cap: 8 min for the two layouts), so one matrix product says enough.
            row = {f"matmul_{MATMUL}": matmul_gflops(dtype, warmup=0, repeats=1, budget_s=0.0)}
        else:
            row = {
                f"matmul_{MATMUL}": matmul_gflops(dtype, **timing),
                "conv3x3_nchw": conv_gflops(dtype, False, **timing),
                "conv3x3_channels_last": conv_gflops(dtype, True, **timing),
            }
        row["bound"] = max(row.values())
        if name == "bf16":
            row["note"] = "native" if cpu.native_bf16 else "emulated/slow"
        rows[name] = {k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}
    int8 = int8_matmul_gops(**timing)
    rows["int8"] = {f"matmul_{MATMUL}": None if int8 is None else round(int8, 1), "path": INT8_PATH,
                    "bound": None if int8 is None else round(int8, 1),
                    "unit": "GOP/s (integer operations)"}
    return {
        "capability": cpu.line(),
        "cpu": cpu.to_dict(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "shapes": {"matmul": f"{MATMUL}x{MATMUL}x{MATMUL}",
                   "conv": "3x3, {channels} -> {channels} channels, {size}x{size}, batch {batch}, padding 1".format(**CONV)},
        "gflops": rows,
    }


def load_or_measure(path: Path | None, quick: bool = False) -> dict:
    """A bound written earlier by ``--json`` (when it was taken on this CPU kind), else a new one."""
    if path is not None and path.is_file():
        bound = json.loads(path.read_text())
        if bound.get("cpu", {}).get("kind") == cpu_capability_info().kind:
            return bound
        print(f"{path} was measured on another CPU kind; measuring again", file=sys.stderr)
    return measure(quick=quick)


def fraction_text(flops: float, seconds: float, precision: str, bound: dict) -> str:
    """'123 GFLOP/s = 0.45 of the measured fp32 bound (274 GFLOP/s)' for a model step."""
    achieved = gflops_per_second(flops, seconds)
    row = bound["gflops"].get(precision) or bound["gflops"]["fp32"]
    return (f"{achieved:.0f} GFLOP/s = {achieved / row['bound']:.2f} of the measured {precision} bound "
            f"({row['bound']:.0f} GFLOP/s)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the JSON object here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, as the app)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row, best kept (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 timed runs per row, to check that it works")
    args = parser.parse_args(argv)
    print(cpu_capability_info().line(), file=sys.stderr, flush=True)
    result = measure(args.threads, args.repeats, args.quick)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
