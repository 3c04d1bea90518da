"""Running under `torchrun`: the process group (gloo on a CPU, nccl on a GPU), and which process talks to
MLflow (the first). Without torchrun there is one process and no group."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def start(device: str) -> None:
    """Join torchrun's process group when this process is one of several (WORLD_SIZE > 1); each process
    keeps one torch thread, as the study's workers do, and a GPU of its own (LOCAL_RANK)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return
    torch.set_num_threads(1)
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every process (the first may still be logging what the others need next, such as a tune
    cell's choice); nothing without torchrun."""
    if dist.is_initialized():
        dist.barrier()
