"""TorchScript files in empanada's format: load, verify, script and export.

empanada's released models (MitoNet_v1.pth, ...) are TorchScript archives written by
``torch.jit.save``; empanada-napari loads a ``<name>.pth`` + ``<name>.yaml`` pair. This module
reads such files for inference and training and writes our models (native or imported,
finetuned or not) in the same form. torch 2.14 calls TorchScript deprecated; it is still what
empanada loads (docs/EMPANADA_FORMATS.md section 3).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from empanada_desktop.backend.safe_save import save_torchscript
from empanada_desktop.core.errors import DiskError, ModelLoadError, describe_os_error
from empanada_desktop.core.names import check_model_name
from empanada_desktop.core.registry_files import check_torchscript_archive

log = logging.getLogger(__name__)

#: Keys every empanada-format model returns in eval mode.
REQUIRED_OUTPUTS = ("sem_logits",)
#: Side of the square test input of ``verify_model_file`` (divisible by every padding factor
#: up to 128; 512-padded models get 512).
_VERIFY_SIZE = 128


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch's TorchScript deprecation warnings: we use TorchScript on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(TorchScript|torch\.jit).*")
        yield


def plain_execution() -> contextlib.AbstractContextManager:
    """Run TorchScript models without the profiling executor's optimisation passes.

    On a CPU, those passes make the first three calls of a model take several seconds each
    and save little afterwards (measured on a ResNet-18 BiFPN at 256 px: 4.4, 1.7, 6.7, 12.4,
    1.2 s optimised against 3.2, 1.1, 0.8, 1.1, 0.8 s plain). Wrap inference in it:
    ``with torch.inference_mode(), plain_execution(): model(x)``.
    """
    return torch.jit.optimized_execution(False)


def optimized_for_cpu(model):
    """A frozen, inference-optimised copy of a TorchScript ``model`` (``model`` is unchanged).

    ``torch.jit.freeze`` + ``optimize_for_inference`` fold the remaining BatchNorms and pick oneDNN
    layouts: on the 2-core dev CPU the MitoNet_v1 architecture segments a 1024 px image in
    1.42 s instead of 1.66 s with identical labels, for a one-off cost of about 0.45 s. Native
    (eager) modules and models that cannot be frozen are returned as they are.
    """
    if not isinstance(model, torch.jit.ScriptModule):
        return model
    try:
        with _quiet_jit():
            return torch.jit.optimize_for_inference(torch.jit.freeze(model.eval()))
    except Exception as error:  # noqa: BLE001 - an optimisation; the plain model still works
        log.info("running the model unoptimised (%s)", str(error).splitlines()[0] if str(error) else error)
        return model


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """Load a TorchScript model file onto ``device``, in eval mode.

    Raises:
        ModelLoadError: the file is missing, empty, truncated, not TorchScript, or torch cannot
            load it; the message names the file and says what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Model file {path} does not exist; check the path or import the model again.")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"Model file {path} is empty (0 bytes); copy or download it again.")
    check_torchscript_archive(path)
    try:
        with _quiet_jit():
            model = torch.jit.load(str(path), map_location=torch.device(device))
    except Exception as error:  # torch raises RuntimeError or ValueError with C++ details
        raise ModelLoadError(
            f"{path} could not be loaded as a TorchScript model ({_first_line(error)}). The file "
            "may be damaged or written by a newer PyTorch; copy or download it again."
        ) from error
    model.eval()
    return model


def verify_model_file(path: str | os.PathLike[str]) -> dict:
    """Load ``path`` and run one small forward pass to check empanada's output contract.

    Returns:
        ``dict(parameters=int, format="torchscript", num_classes=int, outputs=[keys])``.

    Raises:
        ModelLoadError: the file does not load or its outputs do not follow the contract.
    """
    path = Path(path)
    model = load_model(path, "cpu")
    parameters = sum(p.numel() for p in model.parameters())
    if parameters == 0:
        raise ModelLoadError(f"{path} is TorchScript but holds no weights; it is not a segmentation model.")
    size = _VERIFY_SIZE
    outputs = None
    last_error: Exception | None = None
    for size in (_VERIFY_SIZE, 512):
        try:
            # The profiling executor's first calls take seconds; one check needs none of it.
            with torch.inference_mode(), plain_execution():
                outputs = model(torch.zeros(1, 1, size, size))
            break
        except Exception as error:  # a model needing larger padding fails on shapes; try once more
            last_error = error
    if outputs is None:
        raise ModelLoadError(
            f"{path} loads, but does not run on a 1-channel image ({_first_line(last_error)}). It is not an "
            "empanada segmentation model; choose another file."
        )
    if not isinstance(outputs, dict) or any(key not in outputs for key in REQUIRED_OUTPUTS):
        got = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise ModelLoadError(
            f"{path} runs, but returns {got} instead of empanada's outputs "
            f"(a dict with {', '.join(REQUIRED_OUTPUTS)}); choose an empanada model file."
        )
    sem_logits = outputs["sem_logits"]
    if sem_logits.ndim != 4 or sem_logits.shape[0] != 1:
        raise ModelLoadError(
            f"{path}: 'sem_logits' has shape {tuple(sem_logits.shape)}, expected (1, C, H, W)."
        )
    return {
        "parameters": int(parameters),
        "format": "torchscript",
        "num_classes": int(sem_logits.shape[1]),
        "outputs": sorted(outputs),
        "input_size": size,
    }


def script_model(model: nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script(model)``; a model that already is TorchScript is returned as is."""
    if isinstance(model, torch.jit.ScriptModule):
        return model
    try:
        with _quiet_jit():
            return torch.jit.script(model)
    except Exception as first_error:
        # Once in a CI run, scripting a model that scripts everywhere else failed inside
        # ``Conv2d._conv_forward`` ("builtin cannot be used as a value"), not reproduced in five
        # local runs of the same suite. TorchScript caches per-class types for the whole
        # process; a second attempt on a fresh copy with those caches emptied loses nothing
        # where the model really cannot be scripted (the same error comes back).
        log.info("TorchScript failed (%s); retrying with its type caches cleared", _first_line(first_error))
        _clear_script_caches()
        try:
            with _quiet_jit():
                return torch.jit.script(copy.deepcopy(model))
        except Exception as error:
            raise ModelLoadError(
                f"The model ({type(model).__name__}) cannot be converted to TorchScript: {_first_line(error)}"
            ) from error


def _clear_script_caches() -> None:
    """Forget TorchScript's compiled module types (private API; best effort)."""
    try:
        from torch.jit import _recursive, _state

        _recursive.concrete_type_store = _recursive.ConcreteTypeStore()
        _state._clear_class_state()
    except Exception as error:  # noqa: BLE001 - only a retry aid
        log.info("could not clear TorchScript's caches: %s", error)


def export_empanada(model: nn.Module, config, out_dir: str | os.PathLike[str], name: str) -> tuple[Path, Path]:
    """Write ``out_dir/<name>.pth`` (TorchScript, CPU, eval mode) and ``out_dir/<name>.yaml``.

    ``config`` is the model's ``ModelConfig``; the yaml is written with ``model:`` set to the
    absolute path of the .pth and ``model_quantized: null``, which is the pair empanada-napari
    loads. For a native model, the architecture, encoder and (if needed) padding factor are
    filled in from the model. Both files are written atomically; ``model`` is not changed.
    """
    check_model_name(name)
    out_dir = Path(out_dir)
    pth_path = out_dir / f"{name}.pth"
    yaml_path = out_dir / f"{name}.yaml"
    exported = copy.deepcopy(model).cpu().eval()
    scripted = script_model(exported)
    config = _config_for(exported, config)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with _quiet_jit():
            save_torchscript(scripted, pth_path)  # to memory first: a full disk is an error, not an abort
        config.with_model_path(str(pth_path.resolve()), None).to_yaml(yaml_path)
    except OSError as error:
        raise DiskError(describe_os_error(error, getattr(error, "filename", None) or out_dir)) from error
    log.info("exported %s and %s", pth_path, yaml_path)
    return pth_path, yaml_path


def _config_for(model: nn.Module, config):
    """Fill the architecture fields of ``config`` from a native model."""
    import dataclasses

    from empanada_desktop.backend.models import ARCHITECTURES, PADDING_FACTORS

    architecture = type(model).__name__
    if architecture not in ARCHITECTURES or not dataclasses.is_dataclass(config):
        return config
    changes = {"architecture": architecture, "encoder": getattr(model, "encoder_name", config.encoder)}
    needed = PADDING_FACTORS[architecture]
    if config.padding_factor % needed:
        changes["padding_factor"] = needed
    return dataclasses.replace(config, **changes)


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else type(error).__name__
