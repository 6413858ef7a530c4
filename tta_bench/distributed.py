"""Rank and world size under torchrun (or SLURM), and the process group the engine shards a run over."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (multi-node included); a plain run is rank 0 of 1."""
    return Dist(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))


def init(dist: Dist, device: torch.device) -> None:
    if dist.world > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(dist.local_rank)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")


def barrier_init(dist: Dist, device_name: str) -> None:
    """Join the process group (rank 0 has prepared the run folder by then) and wait for every rank."""
    if dist.world > 1:
        cuda = device_name != "cpu" and torch.cuda.is_available()
        init(dist, torch.device("cuda" if cuda else "cpu"))
        torch.distributed.barrier()


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        torch.distributed.barrier()


def shutdown(dist: Dist) -> None:
    if dist.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
