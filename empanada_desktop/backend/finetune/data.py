"""Training data: read and check the folders, sample weighted batches, prefetch them in a thread.

Batches are a pure function of ``(seed, step)``: which pairs (weighted by source, empanada's
``weight_gamma``), how they are augmented, in what order. A resumed run therefore sees exactly the
batches the uninterrupted run would have seen, with no sampler state to save.

Why a background *thread* and not DataLoader worker processes: the per-batch work is a few torch
ops (one ``grid_sample`` per patch, ``bincount``, one convolution) that release the GIL, so a
thread overlaps it with the optimiser step; there is nothing to pickle, no start-up cost per
run, and no ``multiprocessing`` re-launch of a frozen (PyInstaller) executable.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from empanada_desktop.backend.finetune.augment import AugmentParams, augment_batch, normalize
from empanada_desktop.backend.finetune.targets import make_targets
from empanada_desktop.core.errors import DatasetError

log = logging.getLogger(__name__)

_MAX_PROBLEMS_SHOWN = 12


@dataclass
class Batch:
    step: int
    images: torch.Tensor  # (B, 1, P, P) float32, normalised
    targets: dict[str, torch.Tensor]


class TrainingData:
    """All training pairs in memory, with per-pair sampling probabilities."""

    def __init__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        sources: Sequence[str],
        *,
        weight_gamma: float,
        notes: Sequence[str] = (),
    ) -> None:
        if not images:
            raise DatasetError("the training folders hold no image/mask pairs.")
        self.images = list(images)
        self.masks = list(masks)
        self.sources = list(sources)
        self.notes = list(notes)
        self.probabilities = pair_probabilities(self.sources, weight_gamma)

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_roots(cls, roots: Sequence[Path], *, weight_gamma: float, what: str = "training") -> TrainingData:
        images, masks, sources, notes = read_roots(roots, what=what)
        return cls(images, masks, sources, weight_gamma=weight_gamma, notes=notes)

    def batch_indices(self, step: int, batch_size: int, seed: int) -> np.ndarray:
        """Weighted pair indices for ``step``; without replacement when there are enough pairs."""
        rng = np.random.default_rng([seed, step, 0])
        replace = batch_size > len(self)
        return rng.choice(len(self), size=batch_size, replace=replace, p=self.probabilities)

    def make_batch(
        self,
        step: int,
        *,
        batch_size: int,
        patch_size: int,
        seed: int,
        mean: float,
        std: float,
        num_classes: int = 1,
        label_divisor: int = 1000,
        thing_list: Sequence[int] = (1,),
        params: AugmentParams = AugmentParams(),
    ) -> Batch:
        indices = self.batch_indices(step, batch_size, seed)
        rng = np.random.default_rng([seed, step, 1])
        images, masks = augment_batch(
            [self.images[i] for i in indices], [self.masks[i] for i in indices], patch_size, rng, params
        )
        targets = make_targets(masks, num_classes=num_classes, label_divisor=label_divisor, thing_list=thing_list)
        return Batch(step=step, images=normalize(images, mean, std), targets=targets)


def pair_probabilities(sources: Sequence[str], gamma: float) -> np.ndarray:
    """Probability of each pair, empanada's weighting (docs/EMPANADA_FORMATS.md section 1).

    Every pair of a source with ``n`` pairs is drawn with weight ``(1/n)**gamma``, so the source as
    a whole gets a share proportional to ``n**(1 - gamma)``: gamma 0 samples pairs uniformly,
    gamma 1 gives every source the same share, 0.7 keeps a large source from drowning a small one.
    """
    from empanada_desktop.core.dataset import source_weights

    _, inverse, counts = np.unique(np.asarray(sources, dtype=object).astype(str), return_inverse=True, return_counts=True)
    # source_weights is the per-pair weight of each source, (1/n)**gamma normalised over sources.
    per_pair = source_weights(counts.tolist(), gamma)[inverse]
    return per_pair / per_pair.sum()


def source_shares(sources: Sequence[str], gamma: float) -> dict[str, float]:
    """The share of the batches each source gets (the sum of its pairs' probabilities)."""
    probabilities = pair_probabilities(sources, gamma)
    shares: dict[str, float] = {}
    for source, probability in zip(sources, probabilities):
        shares[str(source)] = shares.get(str(source), 0.0) + float(probability)
    return shares


def read_roots(roots: Sequence[Path], *, what: str = "training") -> tuple[list, list, list, list[str]]:
    """Check and read every pair under ``roots`` (empanada layout).

    Raises:
        DatasetError: naming every problem with its file (missing folders, unpaired images,
            shape mismatches, unreadable files ...).
    """
    from empanada_desktop.core import dataset as core_dataset

    roots = [Path(r) for r in roots]
    for root in roots:
        if not root.exists():
            raise DatasetError(f"{what} folder {root} does not exist; choose the folder that holds the source folders.")
        if not root.is_dir():
            raise DatasetError(f"{what} folder {root} is a file; choose the folder that holds the source folders.")
    report = core_dataset.validate_roots(roots)
    if report.problems:
        shown = list(report.problems)[:_MAX_PROBLEMS_SHOWN]
        more = len(report.problems) - len(shown)
        lines = "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else "")
        raise DatasetError(f"the {what} data has problems; fix them and try again:\n  {lines}")
    images, masks, sources, notes = [], [], [], list(report.notes)
    for source, pairs in report.sources.items():
        for pair in pairs:
            image, mask, pair_notes = core_dataset.read_pair(pair)
            images.append(np.ascontiguousarray(image))
            masks.append(_compact_mask(mask))
            sources.append(str(source))
            notes.extend(pair_notes or ())
    if not images:
        listed = ", ".join(str(r) for r in roots)
        raise DatasetError(
            f"no {what} pairs found in {listed}; each folder needs <source>/images/<name>.tiff "
            "with a matching <source>/masks/<name>.tiff."
        )
    return images, masks, sources, notes


def _compact_mask(mask: np.ndarray) -> np.ndarray:
    """Keep masks small in memory (uint16 when the ids fit); augmentation widens them again."""
    mask = np.asarray(mask)
    if mask.size and mask.min() >= 0 and mask.max() < 2**16:
        return mask.astype(np.uint16)
    return mask.astype(np.int64)


class Prefetcher:
    """Prepare batches for ``steps`` in a daemon thread, at most ``depth`` ahead.

    Iterating yields ``Batch`` objects in step order; an exception in the thread is re-raised
    in the consumer. ``close()`` stops the thread promptly (it is also called on exit of a
    ``with`` block).
    """

    def __init__(self, make_batch, steps: Sequence[int], depth: int = 2) -> None:
        self._make_batch = make_batch
        self._steps = list(steps)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="finetune-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for step in self._steps:
                if self._stop.is_set():
                    return
                if not self._put(self._make_batch(step)):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            self._put(error)

    def __iter__(self) -> Iterator[Batch]:
        for _ in self._steps:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
