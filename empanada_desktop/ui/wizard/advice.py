"""The best-practice advice shown where each choice is made (docs/EMPANADA_FORMATS.md section 4).

Kept in one place so that the wording is consistent across pages and easy to review.
"""

from __future__ import annotations

LAYERS = {
    "none": "Only the decoders and heads train; the encoder keeps what it learned. "
            "Start here: it is the fastest and rarely overfits.",
    "stage4": "Also trains the last encoder stage. Usually the best trade-off between "
              "adapting to your images and keeping what the model knows.",
    "stage3": "Trains encoder stages 3 and 4 as well: slower, needs more data.",
    "stage2": "Trains encoder stages 2 to 4 as well: slower still, needs more data.",
    "stage1": "Trains every encoder stage except the stem: close to 'all'.",
    "all": "Trains everything. The slowest choice, and it can overfit when your data is diverse "
           "or small.",
}

LAYERS_INTRO = (
    "Which parts of the model learn from your data. The decoders and heads always train. "
    "Start with <b>none</b>; <b>stage4</b> is usually the best trade-off; <b>all</b> is slowest "
    "and may overfit. An encoder without batch norms (MitoNet_v1 files) trains at 0.01 x the "
    "learning rate with clipped gradients, and a health check stops and rolls back a run that "
    "blows up."
)

ITERATIONS = (
    "Optimiser steps. Rule of thumb: if the model gets about 30% IoU on your data now, 100-200 "
    "iterations on 16 labelled patches usually suffice. empanada allows 100 to 5000."
)

PATCH_SIZE = (
    "Side of the square patches cut from your images during training, in pixels (224-512; 256 by "
    "default). It must be divisible by the model's padding factor ({padding})."
)

BATCH_SIZE = (
    "Patches per step. 16 is the default: with fewer, the statistics of the model's remaining "
    "BatchNorm layers get unstable. More is fine if memory allows."
)

DEVICE = (
    "Where the computation runs. 'auto' picks a CUDA GPU, then Apple's MPS, then the CPU. "
    "On a CPU a MitoNet_v1 iteration (batch 16, 256 px) takes a few seconds (about 3.5 s on a "
    "2-core CPU with bfloat16), so 100 iterations take minutes; a GPU is much faster. "
    "'Estimate duration' measures it on the device you choose."
)

FEW_IMAGES = (
    "You have {count} labelled patch(es), fewer than the batch size of {batch}. Choose one:"
)
REMEDY_SMALLER_BATCH = (
    "Lower the batch size to {count} (works, but below 16 the BatchNorm statistics get unstable)"
)
REMEDY_DUPLICATE = "Repeat patches to fill batches of {batch} (each copy is augmented differently)"
REMEDY_MORE_DATA = (
    "Go back and label more patches, or add a folder of related data (e.g. CEM-MitoLab)"
)

DATA_INTRO = (
    "Training data are pairs of an 8-bit image and its instance mask (0 = background, 1..N = "
    "objects) in empanada's layout: <i>&lt;source&gt;/images/&lt;name&gt;.tiff</i> and "
    "<i>&lt;source&gt;/masks/&lt;name&gt;.tiff</i>. Sources are weighted so that one with many "
    "patches does not drown the others."
)

VALIDATION = (
    "Patches NOT used for training, in the same layout; with them the last page shows IoU, PQ "
    "and F1 before and after finetuning and both models side by side. Saving the training set "
    "in the app holds out a share of the patches in <i>&lt;folder&gt;_val</i>, chosen here "
    "automatically. Without one, both models are compared on training patches (optimistic)."
)

VAL_IS_TRAIN = ("The validation folder {folder} is also a training folder: the model would be "
                "judged on patches it learned from. Choose its _val folder or clear the field.")

MODEL_INTRO = (
    "The model to start from. Finetuning adapts it to your images; the original stays as it is."
)

TRAIN_NEW = (
    "Or train a model of your own from labelled patches (from random or CEM1.5M weights, one or more "
    "classes): it needs more data and iterations than finetuning, typically hundreds of patches and "
    "thousands of iterations."
)

CANCEL = "Cancel stops after the current step and saves a checkpoint, so you can resume later."
