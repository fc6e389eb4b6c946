"""2D inference: one image in, an int32 panoptic label image out.

``Engine2D(model, model_config, inference_config, device).segment(image)`` normalises with the
model's norms, pads bottom/right to the padding factor (times the downsampling), runs the model
(in overlapping tiles when the image is larger than ``tile_size``), post-processes on the model's
device and numbers the connected instances ``class * max_objects + k``.

The model is any module following docs/EMPANADA_FORMATS.md section 3 (native or TorchScript). It is
called with ``interpolate_ins=False``: post-processing works on the 1/4-resolution center map and
offsets directly (coarse boundaries, as empanada-napari's default) or upsamples them itself
(fine boundaries). ``render_steps = 2 + log2(downsample)`` makes PointRend render the semantic
logits back at the full, undownsampled size.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from empanada_desktop.backend.inference import int8
from empanada_desktop.backend.inference.components import panoptic_ids
from empanada_desktop.backend.inference.config import InferenceConfig
from empanada_desktop.backend.inference.postprocess import PostprocessParams, postprocess, semantic_probabilities
from empanada_desktop.backend.inference.tiling import plan_tiles
from empanada_desktop.backend.runtime import tune_cpu_runtime
from empanada_desktop.backend.torchscript import optimized_for_cpu, plain_execution
from empanada_desktop.core.errors import ImageReadError, ModelLoadError

log = logging.getLogger(__name__)


@dataclass
class RawOutput:
    """Model outputs for one whole image, before post-processing.

    ``probs`` (C, H, W) at the image's size; ``ctr_hmp`` (h, w) and ``offsets`` (2, h, w) on a
    grid where one cell covers ``cell`` x ``cell`` image pixels and one grid step is ``unit``
    model-input pixels (the unit of the offsets).
    """

    probs: torch.Tensor
    ctr_hmp: torch.Tensor
    offsets: torch.Tensor
    cell: int
    unit: float


def as_uint8(image: np.ndarray, where: str = "image") -> np.ndarray:
    """The 8-bit grayscale image the models expect; other types are rescaled with a log note."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ImageReadError(
            f"{where} has shape {image.shape}; 2D inference needs one grayscale 2D image "
            "(convert RGB to grayscale, or use stack inference for a 3D volume)"
        )
    if image.dtype == np.uint8:
        return image
    from empanada_desktop.core.imageio import to_uint8

    converted, note = to_uint8(image)
    if note:
        log.warning("%s: %s", where, note)
    return converted


class Engine2D:
    """Segments 2D images with one model; reuse it for many images (the model stays loaded).

    ``optimize=True`` runs a frozen, inference-optimised copy of a TorchScript model on the CPU
    (see ``backend.torchscript.optimized_for_cpu``): worth its one-off cost when many slices or tiles follow.

    On the CPU the first ``forward`` decides between float32 and int8 (``InferenceConfig.int8``,
    ``backend/inference/int8.py``); ``precision`` and ``precision_note`` then say which and why.
    """

    def __init__(self, model, model_config, inference_config: InferenceConfig | None = None, device=None,
                 *, optimize: bool = False):
        tune_cpu_runtime()
        self.config = inference_config or InferenceConfig()
        self.model_config = model_config
        self.config.check_labels_fit(model_config.labels)
        if device is None:
            from empanada_desktop.backend.devices import resolve_device

            device = resolve_device(self.config.device)
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self._optimize = optimize
        self._runnable = None  # chosen by the first forward (float32, optimised, or int8)
        self.precision = "float32"
        self.precision_note = ""
        self.mean = float(model_config.norms.mean)
        self.std = float(model_config.norms.std)
        self.padding_factor = int(model_config.padding_factor)
        self.downsample = int(self.config.downsample)
        self.render_steps = 2 + int(math.log2(self.downsample))
        self.label_divisor = self.config.label_divisor()
        engine = model_config.engine_params
        self.params = PostprocessParams(
            confidence_thr=self.config.confidence_thr,
            center_confidence_thr=self.config.center_confidence_thr,
            nms_kernel=self.config.nms_kernel,
            thing_list=() if self.config.semantic_only else tuple(model_config.thing_list),
            stuff_area=int(engine.stuff_area),
            void_label=int(engine.void_label),
            max_objects=self.label_divisor - 1,
        )

    # -- model -------------------------------------------------------------------------------

    def _normalise(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (H, W) -> (1, 1, Hp, Wp) float on the device, zero-padded bottom/right."""
        image = np.ascontiguousarray(image)
        if not image.flags.writeable:  # memory-mapped, read-only: torch wants a writable array
            image = image.copy()
        x = torch.from_numpy(image).to(self.device)
        x = (x.float() / 255.0 - self.mean) / self.std
        multiple = self.padding_factor * self.downsample
        pad_h = -x.shape[0] % multiple
        pad_w = -x.shape[1] % multiple
        return F.pad(x[None, None], (0, pad_w, 0, pad_h))

    def prepare(self, image: np.ndarray) -> str:
        """Choose float32 or int8 now, calibrating int8 on ``image`` (uint8 (H, W)) if it is tried.

        Without this call the first image segmented is the calibration image; a stack calls it
        with a middle slice. Returns ``precision_note``.
        """
        if self._runnable is None:
            self._choose_runnable(self._normalise(as_uint8(image)))
        return self.precision_note

    def _choose_runnable(self, x: torch.Tensor) -> None:
        """float32 (optimised when asked) or int8, once, from a normalised input ``x``."""
        choice = self.config.int8
        known = int8.cached(self.model)
        if int8.wanted(choice, self.device, pixels=int(x.shape[-2] * x.shape[-1]), reused=self._optimize,
                       cached=isinstance(known, int8.Int8Model)):
            # Calibrated and checked at the size the model will see (the engine's tile size).
            tiles = int8.calibration_tiles(F.avg_pool2d(x, self.downsample) if self.downsample > 1 else x,
                                           size=self.config.tile_size // self.downsample // 16 * 16)
            try:
                quantized = int8.for_model(self.model, self.model_config, tiles, render_steps=self.render_steps,
                                           confidence=self.config.confidence_thr, labeler=self._tile_labels)
            except int8.Int8Unavailable as error:
                self.precision_note = f"float32: {error}"
                log.info("%s", self.precision_note)
            else:
                self._runnable = quantized.module
                self.precision = "int8"
                where = ("earlier in this session" if isinstance(known, int8.Int8Model) else
                         f"on this {'stack' if self._optimize else 'image'} in {quantized.seconds:.1f} s")
                self.precision_note = f"int8 (calibrated {where}; agreement with float32 {quantized.agreement:.3f})"
                return
        elif choice != "off" and self.device.type == "cpu":
            reason = int8.unavailable_reason(self.device)
            self.precision_note = f"float32: {reason}" if reason else "float32 (int8 would not repay its calibration on one small image)"
        else:
            self.precision_note = "float32" if choice == "off" or self.device.type == "cpu" else f"float32 on {self.device}"
        self._runnable = optimized_for_cpu(self.model) if self._optimize and self.device.type == "cpu" else self.model

    def _tile_labels(self, out: dict, shape: tuple) -> np.ndarray:
        """Labels of one model output for a (downsampled) tile of ``shape``: the int8 guard's view."""
        sem = out["sem_logits"][0]
        full = (shape[0] * self.downsample, shape[1] * self.downsample)
        if sem.shape[-2:] != full:
            sem = F.interpolate(sem[None], size=full, mode="bilinear", align_corners=False)[0]
        hmp = out["ctr_hmp"][0, 0]
        unit = shape[1] / hmp.shape[-1]
        raw = RawOutput(semantic_probabilities(sem).float(), hmp.float(), out["offsets"][0].float(),
                        int(round(unit * self.downsample)), unit)
        return self.labels(*self.postprocess(raw))

    def _run_model(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1, 1, h, w) normalised input at full resolution -> (sem_logits, ctr_hmp, offsets)."""
        full = x.shape[-2:]
        if self.downsample > 1:
            x = F.avg_pool2d(x, self.downsample)
        try:
            with plain_execution(), int8.running_model():
                out = self._runnable(x, render_steps=self.render_steps, interpolate_ins=False)
        except (RuntimeError, TypeError) as error:
            if isinstance(error, torch.OutOfMemoryError):
                raise
            raise ModelLoadError(
                "the model does not follow empanada's contract forward(x, render_steps, "
                f"interpolate_ins) -> dict(sem_logits, ctr_hmp, offsets): {error}"
            ) from error
        sem = out["sem_logits"][0]
        if sem.shape[-2:] != full:
            sem = F.interpolate(sem[None], size=full, mode="bilinear", align_corners=False)[0]
        return sem, out["ctr_hmp"][0, 0], out["offsets"][0]

    @torch.inference_mode()
    def forward(self, image: np.ndarray) -> RawOutput:
        """Run the model over a uint8 (H, W) image, in tiles when it is larger than a tile."""
        height, width = image.shape
        x = self._normalise(image)
        if self._runnable is None:
            with torch.inference_mode(False):  # calibration needs ordinary tensors
                self._choose_runnable(self._normalise(image))
        padded_h, padded_w = x.shape[-2:]
        tiles = plan_tiles(
            padded_h, padded_w, self.config.tile_size, self.config.tile_overlap,
            self.padding_factor * self.downsample,
        )
        probs = ctr = off = None
        cell = 1
        unit = 1.0
        for tile in tiles:
            sem, hmp, offsets = self._run_model(
                x[..., tile.y0 : tile.y0 + tile.height, tile.x0 : tile.x0 + tile.width]
            )
            tile_probs = semantic_probabilities(sem)
            if len(tiles) == 1:
                probs, ctr, off = tile_probs, hmp, offsets
                unit = (tile.width / self.downsample) / hmp.shape[-1]
                cell = int(round(unit * self.downsample))
                break
            if probs is None:
                unit = (tile.width / self.downsample) / hmp.shape[-1]
                cell = int(round(unit * self.downsample))
                probs = torch.empty((tile_probs.shape[0], padded_h, padded_w), device=self.device)
                ctr = torch.empty((padded_h // cell, padded_w // cell), device=self.device)
                off = torch.empty((2, padded_h // cell, padded_w // cell), device=self.device)
            (y0, y1), (x0, x1) = tile.own_y, tile.own_x
            probs[:, y0:y1, x0:x1] = tile_probs[:, y0 - tile.y0 : y1 - tile.y0, x0 - tile.x0 : x1 - tile.x0]
            cy0, cy1, cx0, cx1 = y0 // cell, y1 // cell, x0 // cell, x1 // cell
            ty, tx = tile.y0 // cell, tile.x0 // cell
            ctr[cy0:cy1, cx0:cx1] = hmp[cy0 - ty : cy1 - ty, cx0 - tx : cx1 - tx]
            off[:, cy0:cy1, cx0:cx1] = offsets[:, cy0 - ty : cy1 - ty, cx0 - tx : cx1 - tx]
        probs = probs[:, :height, :width].float()
        grid_h = -(-height // cell)
        grid_w = -(-width // cell)
        return RawOutput(probs, ctr[:grid_h, :grid_w].float(), off[:, :grid_h, :grid_w].float(), cell, unit)

    # -- post-processing ----------------------------------------------------------------------

    @torch.inference_mode()
    def postprocess(self, raw: RawOutput) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs -> (classes, instances) numpy arrays of the image's size."""
        ctr, off, cell, unit = raw.ctr_hmp, raw.offsets, raw.cell, raw.unit
        if self.config.fine_boundaries and cell > 1 and self.params.thing_list:
            # Group at the model input's full resolution: bilinear x(grid step), as empanada.
            factor = int(round(unit))
            ctr = F.interpolate(ctr[None, None], scale_factor=factor, mode="bilinear", align_corners=True)[0, 0]
            off = F.interpolate(off[None], scale_factor=factor, mode="bilinear", align_corners=True)[0]
            cell, unit = cell // factor, 1.0
        classes, instances = postprocess(raw.probs, ctr, off, cell=cell, unit=unit, params=self.params)
        return classes.cpu().numpy(), instances.cpu().numpy()

    def labels(self, classes: np.ndarray, instances: np.ndarray) -> np.ndarray:
        """Final int32 panoptic ids with connected instances."""
        return panoptic_ids(classes, instances, self.label_divisor)

    def segment(self, image: np.ndarray) -> np.ndarray:
        """Segment one 2D image; returns int32 ``class * max_objects + instance`` labels."""
        image = as_uint8(image)
        if image.size == 0:
            raise ImageReadError("the image is empty (0 pixels); open an image with content")
        raw = self.forward(image)
        classes, instances = self.postprocess(raw)
        return self.labels(classes, instances)
