"""Rank and world size under torchrun (or SLURM), and the process group the engine shards a run over.

A run launched by torchrun joins a process group even with one process (NCCL on CUDA, gloo on CPU), so that a
one-process torchrun exercises the same collective path as a multi-GPU job; a plain run never touches one.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    launched: bool = False  # started by torchrun (it sets TORCHELASTIC_RUN_ID): join a process group

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def grouped(self) -> bool:
        return self.world > 1 or self.launched


def from_env() -> Dist:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (multi-node included); a plain run is rank 0 of 1."""
    return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)), "TORCHELASTIC_RUN_ID" in os.environ)


def backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init(dist: Dist, device: torch.device) -> None:
    if dist.grouped and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(dist.local_rank)
        torch.distributed.init_process_group(backend(device))


def barrier_init(dist: Dist, device_name: str) -> None:
    """Join the process group (rank 0 has prepared the run folder by then) and wait for every rank."""
    if dist.grouped:
        cuda = device_name != "cpu" and torch.cuda.is_available()
        init(dist, torch.device("cuda" if cuda else "cpu"))
        barrier(dist)


def barrier(dist: Dist) -> None:
    if dist.grouped:
        if torch.distributed.get_backend() == "nccl":  # NCCL wants to know the rank's device
            torch.distributed.barrier(device_ids=[dist.local_rank])
        else:
            torch.distributed.barrier()


def shutdown(dist: Dist) -> None:
    if dist.grouped and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def group_backend() -> str | None:
    """The process group's backend (nccl, gloo) for the summary; None for a plain run."""
    return torch.distributed.get_backend() if torch.distributed.is_initialized() else None
