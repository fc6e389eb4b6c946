"""``empanada-desktop suggest``: the patches most worth annotating next, as a training set.

Writes the suggested patches in empanada's training-set layout, each mask pre-filled with the
model's prediction (``<out>/<source>/images|masks/<name>.tiff``), and ``<out>/suggestions.csv``
with their positions, scores and signals. Patches of the image already in the output folder
(or in ``--exclude`` folders) are not suggested again; nothing existing is overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from empanada_desktop.core.errors import UserError


def register(subparsers) -> None:
    suggest = subparsers.add_parser(
        "suggest",
        help="suggest the patches to annotate next (where the model is unsure)",
        description=(
            "Rank patches of IMAGE (a 2D image or a 3D stack) by the model's own uncertainty "
            "(probability near the threshold, disagreement between flipped/rotated views, unstable "
            "object centers), spread out and not yet labelled, and write the top N as a training "
            "set in empanada's layout with the model's prediction as the starting mask, plus "
            "suggestions.csv (positions and scores)."
        ),
    )
    suggest.add_argument("image", type=Path)
    suggest.add_argument("--model", required=True, help="registered model name (see 'models list')")
    suggest.add_argument("-o", "--output", required=True, type=Path,
                         help="training-set folder to add the patches to (created if missing)")
    suggest.add_argument("-n", type=int, default=16, help="how many patches (default 16)")
    suggest.add_argument("--patch-size", type=int, default=256, help="patch side in pixels (default 256)")
    suggest.add_argument("--scope", choices=("slice", "stack", "planes"), default=None,
                         help="slice: one slice; stack: slices of --plane; planes: xy, xz and yz "
                              "(default: stack for 3D images)")
    suggest.add_argument("--plane", choices=("xy", "xz", "yz"), default="xy")
    suggest.add_argument("--index", type=int, default=None, help="the slice for --scope slice (default: middle)")
    suggest.add_argument("--max-slices", type=int, default=8, help="3D: analyse at most this many slices")
    suggest.add_argument("--exclude", type=Path, action="append", default=[], metavar="DIR",
                         help="training-set folder whose patches of this image are not suggested "
                              "again (the output folder always counts); repeatable")
    suggest.add_argument("--source", default=None,
                         help="source folder name in the training set (default: the image's name)")
    suggest.add_argument("--tta", type=int, default=4, help="flipped/rotated views per slice, 1-8 (default 4)")
    suggest.add_argument("--diversity", type=float, default=0.5,
                         help="0 = most uncertain first, 1 = most spread out (default 0.5)")
    suggest.add_argument("--max-overlap", type=float, default=0.25,
                         help="largest overlap between two patches, fraction of a patch (default 0.25)")
    suggest.add_argument("--no-prefill", action="store_true", help="write empty masks instead of the prediction")
    suggest.add_argument("--map", type=Path, default=None, metavar="TIFF",
                         help="also write the uncertainty map of the shown slice (float32 TIFF)")
    suggest.add_argument("--confidence", type=float, default=0.5, help="segmentation confidence (0..1)")
    suggest.add_argument("--center-confidence", type=float, default=0.1, help="center confidence (0..1)")
    suggest.add_argument("--min-distance", type=int, default=3, help="centers minimum distance (NMS kernel)")
    suggest.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    suggest.add_argument("--seed", type=int, default=0)
    suggest.set_defaults(handler=_suggest)


def _suggest(args: argparse.Namespace) -> int:
    from empanada_desktop.core.imageio import read_image

    output = args.output
    if output.exists() and not output.is_dir():
        raise UserError(f"output {output} is a file; give a folder for the training set")
    if (output / "images").is_dir() or (output / "masks").is_dir():
        raise UserError(
            f"{output} looks like a single source folder (it holds images/ or masks/); give the "
            f"training-set folder above it ({output.parent})"
        )
    if args.map is not None:
        if args.map.suffix.lower() not in (".tif", ".tiff"):
            raise UserError(f"--map {args.map} must end in .tif or .tiff")
        if args.map.exists():
            raise UserError(f"--map {args.map} already exists; choose another file name")
    image = read_image(args.image, mmap=True)
    if image.size == 0:
        raise UserError(f"{args.image} is empty (shape {image.shape}); give an image with content")
    stem = args.image.name.split(".")[0] if ".ome." in args.image.name.lower() else args.image.stem
    source = args.source or stem
    scope = args.scope or ("stack" if image.ndim == 3 else "slice")

    from empanada_desktop.backend.events import Message, Progress
    from empanada_desktop.backend.inference.config import InferenceConfig
    from empanada_desktop.backend.suggest import SuggestConfig, suggest_patches
    from empanada_desktop.cli.infer import _ProgressBar
    from empanada_desktop.core.dataset import write_pair
    from empanada_desktop.core.imageio import write_tiff
    from empanada_desktop.core.patches import patch_name
    from empanada_desktop.core.suggestions_file import free_csv_path, suggestion_row, write_suggestions_csv

    config = SuggestConfig(
        model=args.model, image=image, n=args.n, patch_size=args.patch_size, scope=scope, plane=args.plane,
        index=args.index, training_sets=(output, *args.exclude), image_stem=stem, tta=args.tta,
        diversity=args.diversity, max_overlap=args.max_overlap, max_slices=args.max_slices,
        predict=not args.no_prefill, device=args.device, seed=args.seed,
        inference=InferenceConfig(confidence_thr=args.confidence, center_confidence_thr=args.center_confidence,
                                  nms_kernel=args.min_distance, device=args.device),
    )
    bar = _ProgressBar()
    jobs = suggest_patches(config)
    try:
        while True:
            try:
                event = next(jobs)
            except StopIteration as finished:
                result = finished.value
                break
            if isinstance(event, Progress):
                bar.update(event.step, event.total, event.message)
            elif isinstance(event, Message):
                bar.close()
                print(f"{event.level}: {event.text}", file=sys.stderr)
    finally:
        bar.close()
    if not result.patches:
        raise UserError("no patch could be suggested: every position is already labelled or overlaps one")

    names = [patch_name(stem, p.box) for p in result.patches]
    for name in names:  # refuse to overwrite, before writing anything
        for sub in ("images", "masks"):
            target = output / source / sub / f"{name}.tiff"
            if target.exists():
                raise UserError(f"{target} already exists; choose another output folder")
    import numpy as np

    rows = []
    for patch, name in zip(result.patches, names):
        mask = patch.labels if patch.labels is not None else np.zeros(patch.image.shape, np.int32)
        write_pair(output, source, name, patch.image, mask, overwrite=False)
        rows.append(suggestion_row(patch.rank, patch.score, source, f"{name}.tiff", patch.box, patch.signals))
    signal_names = list(result.patches[0].signals)
    csv_path = write_suggestions_csv(free_csv_path(output), rows, signal_names)
    if args.map is not None:
        write_tiff(args.map, result.uncertainty)
    print(
        f"wrote {len(rows)} patches to {output / source} and {csv_path.name} "
        f"({result.candidates} candidates scored on {len(result.analysed)} slice(s), {result.seconds:.1f} s)",
        file=sys.stderr,
    )
    for row in rows[: min(5, len(rows))]:
        print(f"  #{row['rank']}: {row['plane']} slice {row['index']} at row {row['row']}, col {row['col']} "
              f"(z {row['z']}, y {row['y']}, x {row['x']}), score {row['score']:.3f}", file=sys.stderr)
    return 0
