"""Data-parallel training across processes started by `torchrun` (gloo for CPU tensors, NCCL for CUDA).

Nothing here does anything in a single process: `init()` returns rank 0 of a world of 1 unless
`WORLD_SIZE` > 1 is in the environment (torchrun sets it, with `RANK` and `LOCAL_RANK`), so the
same command line trains in one process or in many:

    hypernet train fleet.csv ...                                  # one process
    torchrun --standalone --nproc_per_node=4 $(which hypernet) train fleet.csv ...   # four

Every rank runs the same program on the same data; `fit` wraps the model in DistributedDataParallel,
each rank draws its own mixes of datasets and DDP averages the gradients. Only rank 0 should write
files (`is_main()`). Collectives never pickle Python objects: everything exchanged is a tensor.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

_OWNED = False  # did init() create the process group (and so should shut it down)?


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def requested() -> bool:
    """Was this process started as one of several (torchrun)?"""
    return _env_int("WORLD_SIZE", 1) > 1


def init() -> DistInfo:
    """Join the process group when started by torchrun (idempotent); a world of 1 otherwise.

    The backend is `gloo` without CUDA, and `cpu:gloo,cuda:nccl` with it: collectives on CUDA
    tensors go through NCCL, those on CPU tensors (checkpointed RNG states) through gloo.
    """
    global _OWNED
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    if not requested():
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    local_rank = _env_int("LOCAL_RANK", 0)
    cuda = torch.cuda.is_available() and dist.is_nccl_available()
    if cuda and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
    if not _OWNED:
        atexit.register(shutdown)
    _OWNED = True
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def info() -> DistInfo:
    """Where this process stands, without joining anything."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return DistInfo()


def is_main() -> bool:
    return info().is_main


def resolve_device(device: str | torch.device, where: DistInfo) -> torch.device:
    """One GPU per process: with several processes a bare "cuda" means cuda:<LOCAL_RANK>."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and where.enabled:
        if where.local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"process {where.rank} has LOCAL_RANK {where.local_rank} but only "
                               f"{torch.cuda.device_count()} GPUs are visible: start at most that many processes "
                               "per node (torchrun --nproc_per_node)")
        return torch.device("cuda", where.local_rank)
    return device


def _comm_device() -> torch.device:
    """Where a tensor must be for a collective: CPU, unless the group is NCCL only."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum over ranks (a new tensor on t's device); t itself when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    work = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(t.device)


def all_gather(t: Tensor) -> list[Tensor]:
    """t from every rank, in rank order (same shape and dtype on every rank), returned on the CPU."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [t.cpu()]
    work = t.detach().to(_comm_device()).contiguous()
    out = [torch.empty_like(work) for _ in range(dist.get_world_size())]
    dist.all_gather(out, work)
    return [o.cpu() for o in out]


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group, if init() created it."""
    global _OWNED
    if _OWNED and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _OWNED = False
