"""Training in several processes, on one computer or many: torch's DistributedDataParallel.

A run started by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) joins a process group in ``session()``: NCCL when training on
CUDA GPUs, Gloo on CPUs. Then, with no change to the training loop's logic:

- every process builds the same global batch for step ``k`` (batches depend only on the seed and
  the step) and trains on its slice of it (``shard_batch``), so N processes with global batch B
  follow the 1-process run with batch B, and a run can resume with another number of processes;
- batch norm is synchronised (statistics over the global batch, ``wrap_model``), and gradients
  are averaged by DistributedDataParallel;
- the loss parts are averaged over processes (``average``) for the log and the curves;
- only rank 0 writes: the run folder, ``config.yaml``, ``metrics.jsonl``, the log, checkpoints,
  the export and the registration (``is_main``); a new run folder's path is sent to the others
  (``from_main``), and a resumed one is read by every process (a multi-node run needs the run
  folder on a shared file system);
- a stop request (Ctrl-C, Cancel) in any process stops all of them after the same step
  (``agreed_stop``).

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from empanada_desktop.core.errors import ConfigError

log = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(minutes=30)  # a validation on rank 0 can keep the others waiting


def world_size_from_env() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


@contextlib.contextmanager
def session(device_choice: str = "auto") -> Iterator[bool]:
    """Join the torchrun process group for the duration of a run; yields whether distributed.

    Raises:
        ConfigError: torchrun's variables are incomplete, or the processes cannot meet.
    """
    if world_size_from_env() <= 1 or is_distributed():
        yield is_distributed()
        return
    from empanada_desktop.backend.devices import resolve_device

    device = resolve_device(device_choice)
    backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank())
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE is set but {', '.join(missing)} is not: start several processes with torchrun.")
    try:
        dist.init_process_group(backend, timeout=TIMEOUT)
    except (RuntimeError, ValueError) as error:
        raise ConfigError(
            f"could not join the {world_size_from_env()} training processes ({backend}, "
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): {str(error).splitlines()[0]}"
        ) from error
    log.info("rank %d of %d joined (%s)", dist.get_rank(), dist.get_world_size(), backend)
    try:
        yield True
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """Under torchrun each process uses the GPU of its local rank."""
    if device.type == "cuda" and world_size_from_env() > 1:
        return torch.device("cuda", local_rank())
    return device


def check_batch_size(batch_size: int) -> None:
    size = world_size()
    if batch_size % size:
        lower, higher = (batch_size // size) * size, (batch_size // size + 1) * size
        raise ConfigError(
            f"batch size {batch_size} cannot be split over {size} processes; use a multiple of {size} "
            f"({', '.join(str(b) for b in (lower, higher) if b > 0)})."
        )


def shard_batch(batch: Any) -> Any:
    """This process's slice of the global batch (``images`` and every target)."""
    size = world_size()
    if size == 1:
        return batch
    per_rank = batch.images.shape[0] // size
    part = slice(rank() * per_rank, (rank() + 1) * per_rank)
    batch.images = batch.images[part].contiguous()
    batch.targets = {key: value[part].contiguous() for key, value in batch.targets.items()}
    return batch


def average(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over processes (for the loss curves)."""
    if not is_distributed():
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / dist.get_world_size()


def agreed_stop(stop: Callable[[], bool]) -> Callable[[], bool]:
    """A stop function that is true in every process as soon as it is true in one."""
    if not is_distributed():
        return stop

    def any_stop() -> bool:
        flag = torch.tensor([1.0 if stop() else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item() > 0)

    return any_stop


def from_main(make: Callable[[], Any]) -> Any:
    """``make()`` run on rank 0 only; every process gets its result (a picklable value)."""
    if not is_distributed():
        return make()
    box = [make() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# -- model ------------------------------------------------------------------------------------


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose gradient is the all-reduced gradient: every process's loss depends
    on every process's batch statistics."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class SyncBatchNorm2d(nn.BatchNorm2d):
    """Batch norm whose training statistics are those of the global batch (every process).

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; this one all-reduces the per-channel sums with a
    differentiable all-reduce, so it works with Gloo on CPUs and NCCL on GPUs alike.
    Parameters and buffers are a BatchNorm2d's, so checkpoints and state dicts are unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        dtype = x.dtype
        x = x.float()
        channels = x.shape[1]
        count = torch.tensor([float(x.numel() // channels)], device=x.device)
        local = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count])
        total = _SumOverProcesses.apply(local)
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - momentum).add_(unbiased * momentum)
                self.num_batches_tracked.add_(1)
        out = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var.view(1, -1, 1, 1) + self.eps)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out.to(dtype)


def _swap_batchnorm(model: nn.Module, to_type: type[nn.BatchNorm2d]) -> nn.Module:
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d) and type(child) is not to_type:
            new = to_type(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            for parameter, old in zip(new.parameters(), child.parameters()):
                parameter.requires_grad_(old.requires_grad)
            setattr(model, name, new.to(next(child.buffers(), torch.empty(0)).device))
        else:
            _swap_batchnorm(child, to_type)
    return model


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Under torchrun: batch norms synchronised and the model in DistributedDataParallel (which
    broadcasts rank 0's weights now and averages gradients in every step). Else ``model``."""
    if not is_distributed():
        return model
    if isinstance(model, torch.jit.ScriptModule):
        raise ConfigError("training in several processes needs a native model; this TorchScript model "
                          "has no native architecture. Train it in one process.")
    _swap_batchnorm(model, SyncBatchNorm2d)
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    # Buffers (batch-norm statistics) are the same everywhere with synchronised batch norm: they
    # are copied from rank 0 once, not before every forward pass.
    import inspect

    no_buffer_sync = ({"forward_sync_buffers": False}
                      if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                      else {"broadcast_buffers": False})
    return DistributedDataParallel(model, device_ids=device_ids, **no_buffer_sync)


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with ordinary BatchNorm2d layers again (to script and export it)."""
    if any(isinstance(m, SyncBatchNorm2d) for m in model.modules()):
        _swap_batchnorm(model, nn.BatchNorm2d)
    return model
