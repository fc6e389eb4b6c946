"""Run empanada-napari 1.2.4's own code paths, for side-by-side benchmarks.

This script runs in a *separate* virtual environment that has empanada-napari installed (see
benchmarks/README.md); it never imports empanada_desktop. It calls empanada's public entry points
(``empanada_napari.inference.Engine2d``, ``Engine3d`` with ``stack_postprocessing``, and
``empanada_napari.finetune.main``) on a model config
and data that our benchmark scripts prepare, and prints one JSON line with the timings.

CPU int8 path: empanada-napari's widgets load ``model_quantized`` (an int8 TorchScript file that
is downloaded) when there is no GPU. Offline, ``quantize`` makes that file from the float one with
empanada's own eager-mode recipe (``empanada.models.quantization``: build ``Quantizable<arch>``,
load the weights, fuse, ``fix_qconfig('fbgemm')``, ``prepare_quantization``, calibrate,
``torch.quantization.convert``, script), and ``--quantized Q.pth`` runs Engine2d/Engine3d with
``use_quantized=True`` on it. Where a step fails, the RESULT line carries ``"error"`` instead.

    REF=/tmp/empvenv/bin/python
    $REF benchmarks/reference/empanada_reference.py infer2d --config M.yaml --image I.tif --out L.tif
    $REF benchmarks/reference/empanada_reference.py infer3d --config M.yaml --volume V.tif --out L.tif
    $REF benchmarks/reference/empanada_reference.py finetune --config M.yaml --train DIR \
        --layers none --iterations 3 --patch-size 256 --batch-size 16
    $REF benchmarks/reference/empanada_reference.py quantize --config M.yaml --calibration I.tif --out Q.pth
    $REF benchmarks/reference/empanada_reference.py infer2d --config M.yaml --image I.tif --out L.tif \
        --quantized Q.pth
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
import traceback

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _load_yaml(path):
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def infer2d(args) -> dict:
    import numpy as np
    import tifffile
    from empanada_napari.inference import Engine2d

    model_config = _quantized_config(args)
    image = tifffile.imread(args.image)
    engine = Engine2d(
        model_config,
        inference_scale=1,
        label_divisor=1000,
        nms_threshold=args.center_confidence,
        nms_kernel=3,
        confidence_thr=args.confidence,
        fine_boundaries=False,
        tile_size=0,
        use_gpu=args.device != "cpu",
        use_quantized=args.quantized is not None,
    )
    _check_quantized(args, engine.engine.model)
    engine.infer(image)  # warm-up: first call pays for TorchScript optimisation passes
    seconds = []
    labels = None
    for _ in range(args.repeats):
        start = time.perf_counter()
        labels = engine.infer(image)
        seconds.append(time.perf_counter() - start)
    tifffile.imwrite(args.out, np.asarray(labels, dtype=np.int32))
    return {"task": "infer2d", "seconds": seconds, "best": min(seconds), "shape": list(image.shape),
            **_quantized_info(args)}


def infer3d(args) -> dict:
    import numpy as np
    import tifffile
    from empanada_napari.inference import Engine3d, stack_postprocessing

    model_config = _quantized_config(args)
    volume = tifffile.imread(args.volume)
    start = time.perf_counter()
    engine = Engine3d(
        model_config,
        median_kernel_size=args.median,
        nms_threshold=args.center_confidence,
        nms_kernel=3,
        confidence_thr=args.confidence,
        min_size=args.min_size,
        min_extent=args.min_extent,
        use_gpu=args.device != "cpu",
        save_panoptic=False,
        use_quantized=args.quantized is not None,
    )
    loaded = time.perf_counter()
    _check_quantized(args, engine.engine.model)
    _, trackers = engine.infer_on_axis(volume, "xy")
    labels = None
    # stack_postprocessing is a napari thread_worker; call the generator it wraps, in this thread.
    for labels, _, _ in stack_postprocessing.__wrapped__(
        {"xy": trackers}, None, model_config, min_size=args.min_size, min_extent=args.min_extent
    ):
        pass  # single-class models yield one volume
    done = time.perf_counter()
    tifffile.imwrite(args.out, np.asarray(labels, dtype=np.int32))
    return {"task": "infer3d", "seconds": done - loaded, "load_seconds": loaded - start,
            "shape": list(volume.shape), **_quantized_info(args)}


# Architecture arguments of empanada-napari's own "train a new model" widget, per family; for
# PanopticDeepLabPR they are MitoNet's (ResNet-50, low-level stage 1, instance decoder at ratio 0.5).
ARCHITECTURE_DEFAULTS = {"PanopticDeepLab": "pdl_model.yaml", "PanopticBiFPN": "bifpn_model.yaml"}


def _architecture(model_config, state, override):
    """(arch, kwargs) for ``empanada.models.quantization.Quantizable<arch>``: napari's training
    defaults, with the encoder from the YAML and the class count / instance decoder read off the
    float weights (empanada's released YAMLs name no architecture; ours add ``architecture`` and
    ``encoder``)."""
    import empanada_napari

    arch = override or model_config.get("architecture") or "PanopticDeepLabPR"
    family = "PanopticBiFPN" if arch.startswith("PanopticBiFPN") else "PanopticDeepLab"
    defaults = os.path.join(os.path.dirname(empanada_napari.__file__), "training",
                            ARCHITECTURE_DEFAULTS[family])
    kwargs = {k: v for k, v in _load_yaml(defaults).items() if k != "arch"}
    if model_config.get("encoder"):
        kwargs["encoder"] = model_config["encoder"]
    if kwargs.get("num_classes") is None:
        head = "semantic_head.head.1.weight"
        if head not in state:
            raise ValueError(f"cannot tell the number of classes: no {head} in the float weights")
        kwargs["num_classes"] = int(state[head].shape[0])
    kwargs["ins_decoder"] = any(k.startswith("instance_decoder.") for k in state)
    return arch, kwargs


def _load_float_weights(model, float_model) -> tuple[list, list, list]:
    """Load the float file's weights into the (eval-mode, unfused) quantizable model, strictly.

    ``fuse_model()`` folds batch norms into convolutions, which renames and drops keys (conv +
    bn + relu -> ``<conv>.0.weight`` with a bias; conv + bn -> ``<conv>.weight`` + ``.bias``). A
    float file may come with some parts already fused: empanada's exporter scripts after
    ``fuse_model()``, and a file with only the encoder fused has ``encoder.conv1.0.weight`` but
    ``semantic_decoder.aspp.convs.0.1.running_mean``. So each part that ``fuse_model()`` changes
    is fused *before* loading when the file's keys under it are the fused ones, and after loading
    otherwise; the fused module is the same either way. Returns (fused before, fused after,
    convolution geometry taken from the file)."""
    import copy

    state = float_model.state_dict()
    fused = copy.deepcopy(model)
    fused.fuse_model()
    plain_keys, fused_keys, file_keys = set(model.state_dict()), set(fused.state_dict()), set(state)
    del fused
    before, after = [], []
    for name, part in model.named_children():
        prefix = name + "."
        plain = {k for k in plain_keys if k.startswith(prefix)}
        done = {k for k in fused_keys if k.startswith(prefix)}
        if plain == done:
            continue  # fuse_model() does not touch this part
        if {k for k in file_keys if k.startswith(prefix)} == done:
            part.fuse_model()
            before.append(name)
        else:
            after.append(name)
    model.load_state_dict(state, strict=True)
    geometry = _conv_geometry_from_file(model, float_model)
    for name in after:
        getattr(model, name).fuse_model()
    return before, after, geometry


GEOMETRY = ("stride", "padding", "dilation", "groups")


def _conv_geometry_from_file(model, float_model) -> list:
    """Give each convolution of the quantizable model the stride, padding, dilation and groups of
    the same-named convolution in the float TorchScript file; returns what changed.

    A state dict has no such hyper-parameters, so a file can load strictly and still compute
    something else: empanada's ResNet dilates the *first* block of layer4 too (output stride 16),
    and a file made by another implementation need not. Call it after loading, while both
    modules have the same names (before the remaining parts are fused)."""
    import torch

    theirs = {}
    for name, module in float_model.named_modules():
        if all(hasattr(module, attr) for attr in GEOMETRY) and hasattr(module, "weight"):
            theirs[name] = {a: getattr(module, a) for a in GEOMETRY}
    changes = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.modules.conv._ConvNd) or name not in theirs:
            continue
        for attr, value in theirs[name].items():
            value = value if attr == "groups" or isinstance(value, str) else tuple(int(v) for v in value)
            if getattr(module, attr) != value:
                changes.append(f"{name}.{attr}: {getattr(module, attr)} -> {value}")
                setattr(module, attr, value)
    return changes


def _calibration_batches(path, norms, tile, limit, batch_size, multiple):
    """Tiles of the calibration image (every slice of a stack), normalised by empanada-napari's
    own ``Preprocessor`` with the model's norms, as Engine2d/Engine3d feed the model."""
    import numpy as np
    import tifffile
    import torch
    from empanada_napari.utils import Preprocessor

    image = tifffile.imread(path)
    slices = image.reshape(-1, *image.shape[-2:])
    size = min(tile, *slices.shape[-2:]) // multiple * multiple
    if size == 0:
        raise ValueError(f"calibration image {image.shape} is smaller than {multiple} px")
    corners = [(z, y, x) for z in range(len(slices))
               for y in range(0, slices.shape[1] - size + 1, size)
               for x in range(0, slices.shape[2] - size + 1, size)]
    if len(corners) > limit:
        corners = [corners[int(i)] for i in np.linspace(0, len(corners) - 1, limit).round()]
    preprocessor = Preprocessor(**norms)
    tiles = [preprocessor(np.ascontiguousarray(slices[z, y:y + size, x:x + size]))["image"]
             for z, y, x in corners]
    return [torch.stack(tiles[i:i + batch_size]) for i in range(0, len(tiles), batch_size)], size


def _scalar_batchnorm_qparams(model) -> list:
    """Make the output scale / zero point of standalone quantized batch norms 0-dim tensors.

    empanada's ``fuse_model()`` leaves the batch norm after each separable convolution unfused
    (decoder ``fuse`` blocks, semantic and center heads), so ``convert`` swaps in
    ``torch.ao.nn.quantized.BatchNorm2d``. In torch 2.14.1 its ``from_float`` stores the
    observer's ``calculate_qparams()`` as they come, shape-[1] tensors, in the ``scale`` and
    ``zero_point`` buffers; ``forward`` passes them to ``quantized::batch_norm2d``'s scalar
    ``output_scale`` / ``output_zero_point``, which eager mode accepts and TorchScript refuses
    ("Cannot input a tensor of dimension other than 0 as a scalar argument"). Same values, 0-dim.
    """
    import torch

    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.ao.nn.quantized.modules.batchnorm._BatchNorm):
            if module.scale.dim() or module.zero_point.dim():
                module.scale = module.scale.reshape(())
                module.zero_point = module.zero_point.reshape(())
                names.append(name)
    return names


def quantize(args) -> dict:
    """Make an int8 TorchScript file from the float one, by empanada's own eager-mode recipe."""
    import torch
    from empanada.models import quantization as quant_models

    model_config = _load_yaml(args.config)
    stage = "load the float TorchScript model"
    start = time.perf_counter()
    try:
        float_model = torch.jit.load(model_config["model"], map_location="cpu").eval()
        state = float_model.state_dict()
        stage = "build the quantizable architecture"
        arch, kwargs = _architecture(model_config, state, args.arch)
        model = quant_models.__dict__["Quantizable" + arch](**kwargs, quantize=True)
        model.eval()
        stage = "load the float weights (strict)"
        fused_before, fused_after, geometry = _load_float_weights(model, float_model)
        stage = "read the calibration tiles"
        batches, tile = _calibration_batches(
            args.calibration, model_config["norms"], args.tile, args.calibration_tiles,
            args.batch_size, int(model_config.get("padding_factor") or 16))
        probe = batches[0][:1]
        stage = "compare the loaded float weights with the float file"
        with torch.no_grad():
            expected = float_model(probe)
            got = model(probe)  # stubs are still no-ops: the float quantizable model
        float_max_abs_diff = {k: float((got[k] - expected[k]).abs().max()) for k in expected}
        float_max_abs = {k: float(expected[k].abs().max()) for k in expected}
        stage = "fix_qconfig('fbgemm') + prepare_quantization"
        model.fix_qconfig("fbgemm")
        model.prepare_quantization()
        stage = "calibrate"
        calibrate_start = time.perf_counter()
        with torch.no_grad():
            for batch in batches:
                model(batch)
        calibrate_seconds = time.perf_counter() - calibrate_start
        stage = "torch.quantization.convert"
        torch.quantization.convert(model, inplace=True)
        patched = [] if args.as_is else _scalar_batchnorm_qparams(model)
        stage = "torch.jit.script"
        scripted = torch.jit.script(model)
        stage = "torch.jit.save"
        torch.jit.save(scripted, args.out)
        seconds = time.perf_counter() - start
        stage = "load the quantized file back and run it"
        reloaded = torch.jit.load(args.out, map_location="cpu")
        with torch.no_grad():
            int8_logits = reloaded(probe)["sem_logits"]
    except Exception as error:
        raise RuntimeError(f"quantize failed at step '{stage}'") from error
    agree = float(((expected["sem_logits"] > 0) == (int8_logits > 0)).float().mean())
    return {
        "task": "quantize", "seconds": seconds, "calibrate_seconds": calibrate_seconds,
        "size_bytes": os.path.getsize(args.out),
        "float_size_bytes": os.path.getsize(model_config["model"]),
        "arch": "Quantizable" + arch, "fused_before_loading": fused_before,
        "fused_after_loading": fused_after, "conv_geometry_from_file": geometry,
        # the quantizable model before prepare (stubs are no-ops) against the float file, first tile
        "float_max_abs_diff_vs_file": float_max_abs_diff, "float_max_abs_of_file": float_max_abs,
        "calibration_tiles": sum(len(b) for b in batches), "tile": tile, "qconfig": "fbgemm",
        "batchnorm_qparams_made_0dim": patched, "engine": torch.backends.quantized.engine,
        "quantized_layers": _is_quantized(reloaded),
        "semantic_sign_agreement_first_tile": agree,
    }


def _quantized_config(args) -> dict:
    """The model YAML; with ``--quantized``, its ``model_quantized`` names that file (what
    empanada-napari's register-model widget writes), for ``use_quantized=True`` to pick."""
    model_config = _load_yaml(args.config)
    if args.quantized is not None:
        if args.device != "cpu":
            raise ValueError("--quantized needs --device cpu: empanada loads model_quantized only on the CPU")
        model_config["model_quantized"] = os.path.abspath(args.quantized)
    return model_config


CONVERTED = ("torch.ao.nn.quantized.modules.Quantize", "torch.ao.nn.quantized.modules.conv.",
             "torch.ao.nn.intrinsic.quantized.")


def _is_quantized(model) -> bool:
    """Whether a TorchScript module holds layers made by ``convert`` (a float file made from
    empanada's quantizable classes also has ``torch.ao.nn.quantized`` FloatFunctional modules)."""
    return any(marker in m._c._type().qualified_name() for m in model.modules() for marker in CONVERTED)


def _check_quantized(args, model) -> None:
    # Engine2d/Engine3d fall back to the float ``model`` without a word; make sure they did not.
    if args.quantized is not None and not _is_quantized(model):
        raise RuntimeError(f"the engine's model has no quantized layers (is {args.quantized} int8?)")


def _quantized_info(args) -> dict:
    if args.quantized is None:
        return {}
    import torch

    return {"quantized": os.path.abspath(args.quantized), "engine": torch.backends.quantized.engine}


def _describe(error: BaseException) -> dict:
    """``error``: 'Type: last line of the message (at file:line in function)' for the error and
    each error it came from; ``error_detail``: the tail of the innermost message (for TorchScript,
    the serialized-code trace that names the failing module and line)."""
    parts, innermost = [], error
    while error is not None:
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
        lines = [line for line in str(error).splitlines() if line.strip()] or [""]
        parts.append(f"{type(error).__name__}: {lines[-1].strip()}{where}")
        innermost, error = error, error.__cause__
    return {"error": " <- caused by ".join(parts), "error_detail": str(innermost)[-3000:]}


def finetune(args) -> dict:
    import copy

    from empanada.config_loaders import load_config
    from empanada_napari import finetune as ft

    main_config = os.path.join(os.path.dirname(ft.__file__), "training", "finetune_config.yaml")
    config = load_config(main_config)
    model_config = _load_yaml(args.config)
    config["MODEL"] = {k: v for k, v in model_config.items() if k != "FINETUNE"}
    config["FINETUNE"] = copy.deepcopy(model_config["FINETUNE"])
    out_dir = tempfile.mkdtemp(prefix="empanada_ref_")
    config["model_name"] = "reference_benchmark"
    config["TRAIN"]["train_dir"] = args.train
    config["TRAIN"]["model_dir"] = out_dir
    config["TRAIN"]["finetune_layer"] = args.layers
    config["TRAIN"]["batch_size"] = args.batch_size
    n_images = len(glob.glob(os.path.join(args.train, "**/images/*")))
    steps_per_epoch = n_images // args.batch_size
    if steps_per_epoch < 1:
        raise SystemExit(f"need at least {args.batch_size} images in {args.train}, found {n_images}")
    epochs = max(1, args.iterations // steps_per_epoch)
    for aug in config["TRAIN"]["augmentations"]:
        for key in list(aug):
            if ("height" in key or "width" in key) and aug[key] is None:
                aug[key] = args.patch_size
    # empanada sets save_freq = epochs // 5, which divides by zero below 5 epochs; saving is not
    # what is measured here, so push it past the end of the run.
    config["TRAIN"]["save_freq"] = epochs + 1
    config["EVAL"]["eval_dir"] = None
    config["EVAL"]["epochs_per_eval"] = epochs + 1
    config["TRAIN"]["schedule_params"]["epochs"] = epochs
    for metric in config["TRAIN"]["metrics"] + config["EVAL"]["metrics"]:
        metric["labels"] = config["MODEL"]["labels"]

    epoch_seconds = []
    original_train = ft.train

    def timed_train(*train_args, **train_kwargs):
        start = time.perf_counter()
        result = original_train(*train_args, **train_kwargs)
        epoch_seconds.append(time.perf_counter() - start)
        return result

    ft.train = timed_train
    from empanada import losses as empanada_losses

    criterion_class = empanada_losses.__dict__[config["FINETUNE"]["criterion"]]
    original_forward = criterion_class.forward
    recorded_losses = []

    def recording_forward(self, output, target):
        loss, aux = original_forward(self, output, target)
        recorded_losses.append(float(loss))
        return loss, aux

    criterion_class.forward = recording_forward
    if args.device == "cpu":
        import torch

        torch.cuda.is_available = lambda: False  # empanada picks cuda:0 whenever it exists
    start = time.perf_counter()
    ft.main(config)
    total = time.perf_counter() - start
    per_step = [s / steps_per_epoch for s in epoch_seconds]
    steady = per_step[1:] if len(per_step) > 1 else per_step
    return {
        "task": "finetune",
        "layers": args.layers,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "seconds_per_step": per_step,
        "steady_seconds_per_step": sum(steady) / len(steady),
        "total_seconds": total,
        "losses": recorded_losses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="task", required=True)
    tasks = {name: sub.add_parser(name) for name in ("infer2d", "infer3d", "finetune", "quantize")}
    for task in tasks.values():
        task.add_argument("--config", required=True, help="the empanada model .yaml")
        task.add_argument("--device", default="cpu")
    for name in ("infer2d", "infer3d"):
        tasks[name].add_argument("--out", required=True)
        tasks[name].add_argument("--confidence", type=float, default=0.5)
        tasks[name].add_argument("--center-confidence", type=float, default=0.1)
        tasks[name].add_argument("--quantized", metavar="Q.pth",
                                 help="run the int8 model made by the quantize task (CPU)")
    tasks["infer2d"].add_argument("--image", required=True)
    tasks["infer2d"].add_argument("--repeats", type=int, default=3)
    tasks["infer3d"].add_argument("--volume", required=True)
    tasks["infer3d"].add_argument("--median", type=int, default=3)
    tasks["infer3d"].add_argument("--min-size", type=int, default=500)
    tasks["infer3d"].add_argument("--min-extent", type=int, default=4)
    tasks["finetune"].add_argument("--train", required=True)
    tasks["finetune"].add_argument("--layers", default="none")
    tasks["finetune"].add_argument("--iterations", type=int, default=3)
    tasks["finetune"].add_argument("--patch-size", type=int, default=256)
    tasks["finetune"].add_argument("--batch-size", type=int, default=16)
    tasks["quantize"].add_argument("--calibration", required=True, help="a 2D image or stack (.tif)")
    tasks["quantize"].add_argument("--out", required=True, help="the int8 TorchScript file to write")
    tasks["quantize"].add_argument("--tile", type=int, default=256, help="calibration tile side")
    tasks["quantize"].add_argument("--calibration-tiles", type=int, default=32)
    tasks["quantize"].add_argument("--batch-size", type=int, default=4)
    tasks["quantize"].add_argument("--as-is", action="store_true",
                                   help="skip the 0-dim batch norm qparams fix (reproduces the "
                                   "torch 2.14 failure)")
    tasks["quantize"].add_argument("--arch", help="empanada architecture (default: the YAML's "
                                   "`architecture`, else PanopticDeepLabPR)")
    args = parser.parse_args()
    run = {"infer2d": infer2d, "infer3d": infer3d, "finetune": finetune, "quantize": quantize}[args.task]
    try:
        result = run(args)
    except Exception as error:
        if args.task != "quantize" and getattr(args, "quantized", None) is None:
            raise
        # The int8 path rests on eager-mode quantization APIs that torch deprecates; say why it
        # failed in the RESULT line (exit status 0), so a benchmark can report it and go on.
        traceback.print_exc()
        result = {"task": args.task, **_describe(error)}
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
