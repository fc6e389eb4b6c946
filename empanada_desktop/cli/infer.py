"""``empanada-desktop infer`` (segment an image or a stack) and ``evaluate`` (score a model)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from empanada_desktop.core.errors import ImageReadError, UserError

OUTPUT_SUFFIXES = (".tif", ".tiff")


def register(subparsers) -> None:
    infer = subparsers.add_parser(
        "infer",
        help="segment a 2D image or a 3D stack with a model",
        description=(
            "Segment IMAGE (TIFF, PNG or JPEG; 2D images are segmented in 2D, stacks slice by "
            "slice and linked in 3D) and write an int32 label TIFF. 2D labels are "
            "class * max-objects + instance; 3D labels of a single-class model are 1..N."
        ),
    )
    infer.add_argument("image", type=Path)
    infer.add_argument("--model", required=True, help="registered model name (see 'models list')")
    infer.add_argument("-o", "--output", required=True, type=Path, help="label TIFF to write")
    infer.add_argument("--plane", choices=("xy", "xz", "yz"), default="xy", help="stacks: slicing plane")
    infer.add_argument("--ortho", action="store_true", help="stacks: combine xy, xz and yz")
    infer.add_argument("--vote", type=int, default=2, choices=(1, 2, 3), help="ortho: planes that must agree")
    infer.add_argument("--tile-size", type=int, default=2048, help="tile larger images (pixels per side)")
    infer.add_argument("--downsample", type=int, default=1, help="shrink by 1, 2, 4, 8 or 16 first")
    infer.add_argument("--confidence", type=float, default=0.5, help="segmentation confidence (0..1)")
    infer.add_argument("--center-confidence", type=float, default=0.1, help="center confidence (0..1)")
    infer.add_argument("--min-distance", type=int, default=3, help="centers minimum distance (NMS kernel)")
    infer.add_argument("--fine-boundaries", action="store_true", help="group pixels at full resolution")
    infer.add_argument("--semantic-only", action="store_true", help="no instances")
    infer.add_argument("--median", type=int, default=3, help="stacks: median filter over this many slices")
    infer.add_argument("--min-size", type=int, default=500, help="stacks: smallest object in voxels")
    infer.add_argument("--min-extent", type=int, default=4, help="stacks: thinnest object in slices")
    infer.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    infer.add_argument("--overwrite", action="store_true",
                       help="replace OUTPUT if it exists (never allowed when it is the input image)")
    infer.set_defaults(handler=_infer)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="score a model (IoU, PQ, F1@0.5) on an empanada-layout folder of images and masks",
    )
    evaluate.add_argument("--model", required=True, help="registered model name")
    evaluate.add_argument("--data", required=True, type=Path, help="folder: <source>/images, <source>/masks")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    evaluate.set_defaults(handler=_evaluate)


def _config(args: argparse.Namespace):
    from empanada_desktop.backend.inference.config import InferenceConfig

    return InferenceConfig(
        confidence_thr=args.confidence,
        center_confidence_thr=args.center_confidence,
        nms_kernel=args.min_distance,
        downsample=args.downsample,
        fine_boundaries=args.fine_boundaries,
        semantic_only=args.semantic_only,
        tile_size=args.tile_size,
        device=args.device,
        plane=args.plane,
        median_kernel=args.median,
        min_size=args.min_size,
        min_extent=args.min_extent,
        ortho=args.ortho,
        vote_thr=args.vote,
    )


class _ProgressBar:
    """A one-line text progress bar on stderr."""

    def __init__(self, width: int = 30):
        self.width = width
        self.drawn = False

    def update(self, step: int, total: int, message: str = "", eta: float | None = None) -> None:
        done = int(self.width * step / max(total, 1))
        eta_text = f" {eta:5.0f} s left" if eta is not None else ""
        line = f"\r[{'#' * done}{'.' * (self.width - done)}] {step}/{total} {message}{eta_text}"
        sys.stderr.write(line.ljust(79))
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            self.drawn = False


def _infer(args: argparse.Namespace) -> int:
    if args.output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise UserError(f"output {args.output} must end in .tif or .tiff (labels are written as TIFF)")
    from empanada_desktop.core.output_paths import check_output_file

    check_output_file(args.output, [args.image], overwrite=args.overwrite)
    config = _config(args)
    from empanada_desktop.core.imageio import read_image

    notes: list[str] = []
    image = read_image(args.image, mmap=True, notes=notes)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if image.size == 0:
        raise ImageReadError(f"{args.image} is empty (shape {image.shape}); open an image with content")

    from empanada_desktop.backend.devices import resolve_device
    from empanada_desktop.backend.loading import load_registered

    device = resolve_device(config.device)
    model, model_config = load_registered(args.model, device)
    start = time.perf_counter()
    if image.ndim == 2:
        _infer_2d(args, image, model, model_config, config, device)
    else:
        _infer_3d(args, image, model, model_config, config, device)
    print(f"wrote {args.output} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _infer_2d(args, image, model, model_config, config, device) -> None:
    import numpy as np

    from empanada_desktop.backend.inference.engine2d import Engine2D
    from empanada_desktop.core.imageio import to_uint8, write_tiff

    if image.dtype != np.uint8:
        image, note = to_uint8(np.asarray(image))
        if note:
            print(f"note: {args.image.name}: {note}", file=sys.stderr)
    bar = _ProgressBar()
    bar.update(0, 1, "segmenting")
    labels = Engine2D(model, model_config, config, device).segment(image)
    bar.update(1, 1, f"{len(np.unique(labels[labels > 0]))} objects")
    bar.close()
    write_tiff(args.output, labels)


def _infer_3d(args, volume, model, model_config, config, device) -> None:
    from empanada_desktop.backend.events import Message, Progress
    from empanada_desktop.backend.inference.engine3d import segment_volume

    bar = _ProgressBar()
    jobs = segment_volume(model, volume, config, args.output, model_config=model_config, device=device)
    try:
        for event in jobs:
            if isinstance(event, Progress):
                bar.update(event.step, event.total, event.message, event.eta_seconds)
            elif isinstance(event, Message):
                bar.close()
                print(f"{event.level}: {event.text}", file=sys.stderr)
    finally:
        bar.close()


def _evaluate(args: argparse.Namespace) -> int:
    from empanada_desktop.core.dataset import scan_dataset
    from empanada_desktop.core.errors import DatasetError

    report = scan_dataset(args.data)
    report.raise_if_problems("evaluation data")
    pairs = report.pairs
    if not pairs:
        raise DatasetError(
            f"{args.data} has no image/mask pairs; expected <source>/images/*.tif with "
            "<source>/masks/*.tif of the same names"
        )
    from empanada_desktop.backend.devices import resolve_device
    from empanada_desktop.backend.inference.evaluate import evaluate
    from empanada_desktop.backend.loading import load_registered

    device = resolve_device(args.device)
    model, model_config = load_registered(args.model, device)
    scores = evaluate(model, model_config, pairs, device)
    print(
        f"{args.model} on {args.data} ({scores['images']} images): "
        f"IoU {scores['iou']:.3f}  PQ {scores['pq']:.3f}  F1@0.5 {scores['f1']:.3f}  "
        f"(TP {scores['tp']}, FP {scores['fp']}, FN {scores['fn']})"
    )
    return 0
