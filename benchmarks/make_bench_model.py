"""Train the model the inference benchmarks compare with (benchmark helper, not a test).

Speed needs no trained model, but agreement does: "int8 labels agree with float32" means
nothing for a model that does not segment the image. This trains MitoNet_v1's architecture
(PanopticDeepLabPR, ResNet50) from random weights *with batch norm*, as MitoNet_v1 itself was
trained before its batch norms were folded into the convolutions, on the synthetic images of
``benchmarks/finetune_speed.py`` (bright ellipses on a noisy background, the kind of image
``benchmarks/inference_speed.py`` segments), with the app's own ``train`` command:

    .venv/bin/python benchmarks/make_bench_model.py --out /tmp/bm          # about 10-15 min, 2 cores
    .venv/bin/python benchmarks/inference_speed.py --weights /tmp/bm/bench_bn.pth --config /tmp/bm/bench_bn.yaml

Why not the finetune benchmark's model: that one starts from a random *fused* encoder (no batch
norm, activations growing about 150x through the stages) and after 120 iterations still gave 94%
of the pixels of the 1024 px benchmark image a foreground probability within 0.1 of the 0.5
threshold: a bfloat16 encoder, or 1% noise on its features, moved the foreground by 70% (IoU
0.25-0.33 against itself). This model leaves 0.4% of the pixels that close, finds all the
objects, and the same perturbations move its labels by less than 0.1%.

At the end it prints how confident the model is on the benchmark image (``confidence``), the
check every inference agreement row comes with (``inference_speed.model_confidence``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for bench_bn.pth and bench_bn.yaml")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    from finetune_speed import write_synthetic_training_set

    from empanada_desktop.core.model_config import ModelConfig

    with tempfile.TemporaryDirectory(prefix="bench-model-") as folder:
        work = Path(folder)
        data = write_synthetic_training_set(work / "data", 32, 320)
        env = dict(os.environ, EMPANADA_DESKTOP_HOME=str(work / "home"))
        subprocess.run(
            [sys.executable, "-m", "empanada_desktop", "train", "--encoder", "resnet50", "--init", "random",
             "--train", str(data), "--iterations", str(args.iterations), "--patch-size", str(args.patch_size),
             "--batch-size", str(args.batch_size), "--name", "bench_bn", "--out", str(work / "run"),
             "--checkpoint-every", "0", "--no-register"],
            check=True, env=env,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "bench_bn.pth").write_bytes((work / "run" / "bench_bn.pth").read_bytes())
        # The exported config names the weights in the run folder, which goes with the temporary folder.
        ModelConfig.from_yaml(work / "run" / "bench_bn.yaml").with_model_path(
            args.out / "bench_bn.pth").to_yaml(args.out / "bench_bn.yaml")
    from inference_speed import model_confidence, synthetic_em

    from empanada_desktop.backend.torchscript import load_model

    found = model_confidence(load_model(args.out / "bench_bn.pth", "cpu"),
                             ModelConfig.from_yaml(args.out / "bench_bn.yaml"), synthetic_em((1024, 1024)))
    print(f"model: {args.out / 'bench_bn.pth'} (+ .yaml); on the 1024 px benchmark image it finds {found['objects']} "
          f"objects and {100 * found['uncertain_fraction']:.1f}% of the pixels have a foreground probability "
          "within 0.1 of 0.5 (a working model: well under 5%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
