"""Dask clusters for block-wise inference: embedded, an existing one, or batch jobs.

- Embedded (default): a ``distributed.LocalCluster`` sized to this computer: one worker per GPU
  when CUDA GPUs are present, else ``cores // 8`` workers (at least 1, fewer when memory is
  short, about 8 GB per worker), one task at a time per worker, the cores shared out among
  their torch threads.
- ``scheduler="tcp://host:8786"``: join a running cluster (its workers need this package and
  the same files at the same paths).
- ``cluster="slurm" | "pbs" | "lsf"``: start workers as batch jobs through dask-jobqueue; the
  options (cores, memory, queue, walltime, account, jobs, job_extra, ...) go to its cluster
  class. ``job_script(...)`` shows the script a job would run without submitting anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from empanada_desktop.core.errors import ConfigError, UserError

log = logging.getLogger(__name__)

GB = 1024**3
WORKER_MEMORY_GUESS = 8 * GB  # a MitoNet worker on 64 x 1792 x 1792 blocks with 2048 px tiles
JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster"}
_INT_OPTIONS = ("cores", "processes", "jobs")
_LIST_OPTIONS = ("job_extra", "job_extra_directives", "job_script_prologue", "worker_extra_args")


@dataclass(frozen=True)
class ClusterConfig:
    """Where the blocks run.

    Attributes:
        workers: embedded cluster: number of workers (None: sized to this computer); jobqueue:
            number of jobs.
        threads: torch threads per worker (None: the cores shared out among the workers).
        processes: embedded cluster: workers are processes (False: threads in this process).
        memory_limit: per embedded worker, e.g. "8GB" (None: the machine's memory shared out).
        scheduler: address of a running Dask scheduler to use instead.
        cluster: "slurm", "pbs" or "lsf" to start the workers as batch jobs.
        cluster_options: options of the dask-jobqueue cluster (cores, memory, queue, ...).
    """

    workers: int | None = None
    threads: int | None = None
    processes: bool = True
    memory_limit: str | int | None = None
    scheduler: str | None = None
    cluster: str | None = None
    cluster_options: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers is {self.workers}: use at least 1")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads is {self.threads}: use at least 1")
        if self.cluster is not None and self.cluster not in JOBQUEUE:
            raise ConfigError(f"cluster is {self.cluster!r}: choose one of {', '.join(JOBQUEUE)}")
        if self.cluster and self.scheduler:
            raise ConfigError("give either a scheduler address or a cluster type, not both")


@dataclass(frozen=True)
class LocalSize:
    workers: int
    torch_threads: int
    memory_limit: int
    gpus: int


def local_size(workers: int | None = None, threads: int | None = None, *, gpus: int | None = None,
               cores: int | None = None, memory: int | None = None) -> LocalSize:
    """Workers x threads for an embedded cluster on this computer (see the module docstring)."""
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cores = cores or os.cpu_count() or 1
    if memory is None:
        import psutil

        memory = psutil.virtual_memory().total
    if workers is None:
        if gpus:
            workers = gpus
        else:
            workers = max(1, min(cores // 8, int(memory * 0.8) // WORKER_MEMORY_GUESS))
    torch_threads = threads or max(1, cores // workers)
    return LocalSize(workers, torch_threads, int(memory * 0.9) // workers, gpus)


def _distributed():
    try:
        import distributed
    except ImportError:
        raise UserError(
            "block-wise inference needs Dask's 'distributed' package; install it with "
            "'pip install \"dask[array]\" distributed'"
        ) from None
    return distributed


def jobqueue_options(kind: str, options: Mapping[str, object]) -> dict:
    """CLI-style options (strings) -> keyword arguments of the dask-jobqueue cluster class."""
    kwargs: dict = {}
    for key, value in options.items():
        key = key.replace("-", "_")
        if key in ("jobs",):
            continue
        if key in _INT_OPTIONS:
            value = int(value)
        if key in _LIST_OPTIONS:
            value = [value] if isinstance(value, str) else list(value)
            key = "job_extra_directives" if key == "job_extra" else key
        kwargs[key] = value
    kwargs.setdefault("cores", 8)
    kwargs.setdefault("memory", "32GB")
    kwargs.setdefault("processes", 1)  # one worker per job: one model in memory per job
    # One block at a time per worker, all the job's cores as torch threads: the worker's own
    # thread count (cores / processes by default) is overridden by a last --nthreads.
    kwargs["worker_extra_args"] = list(kwargs.get("worker_extra_args", [])) + ["--nthreads", "1"]
    import sys

    kwargs.setdefault("python", sys.executable)
    return kwargs


def jobqueue_cluster(kind: str, options: Mapping[str, object]):
    try:
        import dask_jobqueue
    except ImportError:
        raise UserError(
            f"--cluster {kind} needs dask-jobqueue; install it with 'pip install dask-jobqueue' "
            "(or the 'cluster' extra of empanada-desktop)"
        ) from None
    cls = getattr(dask_jobqueue, JOBQUEUE[kind])
    try:
        return cls(**jobqueue_options(kind, options))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"cluster options {dict(options)} are not accepted by {cls.__name__}: {error}") from None


def job_script(kind: str, options: Mapping[str, object]) -> str:
    """The batch script one worker job would run (nothing is submitted)."""
    cluster = jobqueue_cluster(kind, options)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


class Connection:
    """A client and what to close when done; ``description`` says where the work runs."""

    def __init__(self, client, closers, description: str, torch_threads: int | None, gpus: int):
        self.client = client
        self._closers = closers
        self.description = description
        self.torch_threads = torch_threads
        self.gpus = gpus

    def close(self) -> None:
        for close in self._closers:
            try:
                close()
            except Exception as error:  # noqa: BLE001 - closing must not hide the real outcome
                log.debug("closing the cluster: %s", error)
        self._closers = []


def connect(config: ClusterConfig, *, device: str = "auto") -> Connection:
    """Start or join the cluster described by ``config``."""
    distributed = _distributed()
    if not log.isEnabledFor(logging.DEBUG):  # Dask logs every worker start and stop at INFO
        logging.getLogger("distributed").setLevel(logging.WARNING)
    if config.scheduler:
        try:
            client = distributed.Client(config.scheduler, timeout="30s")
        except (OSError, TimeoutError) as error:
            raise UserError(f"cannot reach the Dask scheduler at {config.scheduler} ({error})") from None
        workers = len(client.scheduler_info().get("workers", {}))
        return Connection(client, [client.close], f"scheduler {config.scheduler} ({workers} workers)", None, 0)
    if config.cluster:
        cluster = jobqueue_cluster(config.cluster, config.cluster_options)
        jobs = int(config.cluster_options.get("jobs", config.workers or 1))
        cluster.scale(jobs=jobs)
        client = distributed.Client(cluster)
        options = jobqueue_options(config.cluster, config.cluster_options)
        threads = config.threads or max(1, int(options["cores"]) // int(options["processes"]))
        gpus = 1 if any("gpu" in str(v) for v in options.get("job_extra_directives", [])) else 0
        return Connection(client, [client.close, cluster.close],
                          f"{config.cluster} cluster, {jobs} jobs ({cluster.dashboard_link})", threads, gpus)
    gpus = None if device in ("auto",) or device.startswith("cuda") else 0
    size = local_size(config.workers, config.threads, gpus=gpus)
    memory_limit = config.memory_limit if config.memory_limit is not None else size.memory_limit
    cluster = distributed.LocalCluster(
        n_workers=size.workers, threads_per_worker=1, processes=config.processes,
        memory_limit=memory_limit, dashboard_address=None, silence_logs=logging.ERROR,
    )
    client = distributed.Client(cluster)
    kind = "processes" if config.processes else "threads"
    description = (f"local cluster: {size.workers} worker {kind} x {size.torch_threads} torch threads"
                   + (f", {size.gpus} GPUs" if size.gpus else ""))
    return Connection(client, [client.close, cluster.close], description,
                      size.torch_threads if config.processes else None, size.gpus)
