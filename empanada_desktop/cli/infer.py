"""``empanada-desktop infer`` (segment an image or a stack) and ``evaluate`` (score a model)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from empanada_desktop.core.errors import ImageReadError, UserError

OUTPUT_SUFFIXES = (".tif", ".tiff", ".zarr")
INPUT_HELP = (
    "image or volume: TIFF (or a folder of TIFF slices), PNG, JPEG, OME-Zarr/Zarr, N5, HDF5, MRC/REC "
    "or DM3/DM4; a dataset inside HDF5/Zarr/N5 as FILE:/NAME or with --dataset"
)


def register(subparsers) -> None:
    infer = subparsers.add_parser(
        "infer",
        help="segment a 2D image or a 3D stack with a model",
        description=(
            "Segment IMAGE (2D images are segmented in 2D, volumes slice by slice and linked in "
            "3D) and write int32 labels: a TIFF, or an OME-Zarr (.zarr, or IMAGE.zarr/labels/NAME "
            "inside an OME-Zarr image), which segments a volume block by block on a Dask cluster "
            "(embedded by default) and resumes when run again. 2D labels are "
            "class * max-objects + instance; 3D labels of a single-class model are 1..N."
        ),
    )
    infer.add_argument("image", type=str, help=INPUT_HELP)
    infer.add_argument("--model", help="registered model name (see 'models list')")
    infer.add_argument("-o", "--output", type=Path, help="labels to write: .tif/.tiff or .zarr")
    infer.add_argument("--dataset", help="the image inside an HDF5/Zarr/N5 container")
    infer.add_argument("--list-datasets", action="store_true", help="list the images inside IMAGE and exit")
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
    infer.add_argument("--int8", choices=("auto", "on", "off"), default="auto",
                       help="CPU: run the model in int8, calibrated on the image and checked against "
                            "float32 (auto: for stacks and large images)")
    infer.add_argument("--overwrite", action="store_true",
                       help="replace a TIFF OUTPUT if it exists (a .zarr output of the same job is "
                       "resumed instead; never allowed when OUTPUT is the input image)")
    infer.add_argument("--voxel-size", help="correct the voxel size: Z,Y,X (written to OME-Zarr output)")
    infer.add_argument("--unit", help="unit of --voxel-size, e.g. nm (default: the file's)")
    big = infer.add_argument_group("big volumes (block-wise on Dask; output .zarr)")
    big.add_argument("--block-size", help="block size Z,Y,X in voxels (default 64,1792,1792 for 2048 tiles)")
    big.add_argument("--halo", help="context read around each block, Z,Y,X (default 2,64,64)")
    big.add_argument("--workers", type=int, help="embedded cluster: workers (default: sized to this computer)")
    big.add_argument("--threads", type=int, help="torch threads per worker (default: cores / workers)")
    big.add_argument("--no-processes", action="store_true",
                     help="embedded cluster: workers as threads of this process (small jobs, debugging)")
    big.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786")
    big.add_argument("--cluster", choices=("slurm", "pbs", "lsf"), help="start workers as batch jobs (dask-jobqueue)")
    big.add_argument("--cluster-option", action="append", default=[], metavar="KEY=VALUE",
                     help="a dask-jobqueue option: cores=8, memory=32GB, queue=gpu, walltime=04:00:00, "
                     "account=..., jobs=4, job_extra=--gres=gpu:1 (repeat for several)")
    big.add_argument("--print-job-script", action="store_true", help="print the batch script of one worker job and exit")
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
        int8=args.int8,
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


def _numbers(text: str | None, what: str, kind=int):
    if text is None:
        return None
    try:
        values = [kind(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} {text!r}: give three numbers Z,Y,X, e.g. 64,1024,1024") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise UserError(f"{what} {text!r}: give three numbers Z,Y,X")
    return tuple(values)


def _is_zarr_output(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or (path.parent.name == "labels" and path.parent.parent.suffix.lower() == ".zarr")


def _cluster_options(args) -> dict:
    options = {}
    for item in args.cluster_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--cluster-option {item!r}: write KEY=VALUE, e.g. memory=32GB")
        if key.strip() in options and key.strip() in ("job_extra", "job-extra", "job_script_prologue"):
            previous = options[key.strip()]
            options[key.strip()] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            options[key.strip()] = value
    return options


def _infer(args: argparse.Namespace) -> int:
    from empanada_desktop.core.volumes import list_datasets, open_image

    if args.list_datasets:
        for info in list_datasets(args.image):
            print(info)
        return 0
    if args.print_job_script:
        if not args.cluster:
            raise UserError("--print-job-script needs --cluster slurm|pbs|lsf")
        from empanada_desktop.backend.inference.cluster import job_script

        print(job_script(args.cluster, _cluster_options(args)))
        return 0
    if not args.model or not args.output:
        raise UserError("infer needs --model NAME and -o OUTPUT (.tif, .tiff or .zarr)")
    zarr_output = _is_zarr_output(args.output)
    if args.output.suffix.lower() not in OUTPUT_SUFFIXES and not zarr_output:
        raise UserError(f"output {args.output} must end in .tif, .tiff or .zarr (labels are written as TIFF or OME-Zarr)")
    blockwise_options = [args.block_size, args.halo, args.workers, args.scheduler, args.cluster]
    if any(v is not None for v in blockwise_options) and not zarr_output:
        raise UserError("block-wise options write OME-Zarr: give an output ending in .zarr")
    from empanada_desktop.core.output_paths import check_output_file, same_file

    if not zarr_output:
        check_output_file(args.output, [args.image], overwrite=args.overwrite)
    elif same_file(args.output, args.image):
        raise UserError(f"the output {args.output} is the input {args.image}: writing it would destroy "
                        f"your image; write the labels to {args.output / 'labels' / 'mito'} or another .zarr")
    config = _config(args)
    source = open_image(args.image, dataset=args.dataset)
    voxel_size = _numbers(args.voxel_size, "--voxel-size", float)
    if voxel_size or args.unit:
        source = source.with_spacing(voxel_size, args.unit)
    for note in source.notes:
        print(f"note: {note}", file=sys.stderr)
    if source.size == 0:
        raise ImageReadError(f"{args.image} is empty (shape {source.shape}); open an image with content")

    start = time.perf_counter()
    if source.ndim == 3 and zarr_output:
        _infer_blockwise(args, source, config)
    else:
        from empanada_desktop.backend.devices import resolve_device
        from empanada_desktop.backend.loading import load_registered

        device = resolve_device(config.device)
        model, model_config = load_registered(args.model, device)
        if source.ndim == 2:
            _infer_2d(args, source[...], model, model_config, config, device, source)
        else:
            _infer_3d(args, source, model, model_config, config, device)
    print(f"wrote {args.output} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


def _infer_blockwise(args, source, config) -> None:
    from empanada_desktop.backend.inference.blockwise import BlockwiseSettings, segment_blockwise
    from empanada_desktop.backend.inference.cluster import ClusterConfig

    cluster = ClusterConfig(workers=args.workers, threads=args.threads, scheduler=args.scheduler,
                            processes=not args.no_processes,
                            cluster=args.cluster, cluster_options=_cluster_options(args))
    blocks = BlockwiseSettings(block_size=_numbers(args.block_size, "--block-size"),
                               halo=_numbers(args.halo, "--halo"), cluster=cluster)
    jobs = segment_blockwise(args.model, source, config, args.output, blocks=blocks)
    try:
        _show_progress(jobs)
    except KeyboardInterrupt:
        jobs.close()
        print(f"note: finished blocks are kept in {args.output}; run the same command again to resume",
              file=sys.stderr)
        raise


def _infer_2d(args, image, model, model_config, config, device, source=None) -> None:
    import numpy as np

    from empanada_desktop.backend.inference.engine2d import Engine2D
    from empanada_desktop.core.imageio import to_uint8, write_tiff

    if image.dtype != np.uint8:
        image, note = to_uint8(np.asarray(image))
        if note:
            print(f"note: {Path(args.image).name}: {note}", file=sys.stderr)
    bar = _ProgressBar()
    bar.update(0, 1, "segmenting")
    engine = Engine2D(model, model_config, config, device)
    labels = engine.segment(image)
    bar.update(1, 1, f"{len(np.unique(labels[labels > 0]))} objects")
    bar.close()
    print(f"info: model precision: {engine.precision_note}", file=sys.stderr)
    if _is_zarr_output(args.output):
        from empanada_desktop.core.volumes.zarr_io import write_labels

        spacing = source.spacing if source is not None else None
        write_labels(args.output, labels, voxel_size=spacing.voxel_size if spacing else (1.0, 1.0, 1.0),
                     unit=spacing.unit if spacing else "pixel")
    else:
        write_tiff(args.output, labels)


def _infer_3d(args, volume, model, model_config, config, device) -> None:
    from empanada_desktop.backend.inference.engine3d import segment_volume

    _show_progress(segment_volume(model, volume, config, args.output, model_config=model_config, device=device))


def _show_progress(jobs) -> None:
    """Run a volume job to its end: its progress as a bar on stderr, its messages as lines."""
    from empanada_desktop.backend.events import Message, Progress

    bar = _ProgressBar()
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
