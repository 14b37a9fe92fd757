"""Training on many processes: the ``torch.distributed`` plumbing of :func:`hhlib.train.fit`.

``torchrun --nproc_per_node=N -m hhlib train ...`` starts N copies of the
command; each reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the
environment torchrun sets. :func:`setup` joins them into one process group
(NCCL on CUDA, gloo on a CPU), :func:`teardown` leaves it. Every process
trains on its slice of each global batch, and the method sees the whole
global batch, gathered (:func:`gather`), so its state (a memory bank, ADSH's
database codes) is the same on every process and its loss is the one a
single process computes (docs/DESIGN.md, "Loss and training").
With one process every helper here is a no-op.
"""

from __future__ import annotations

import atexit
import os
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "launched",
    "active",
    "world_size",
    "rank",
    "is_main",
    "local_world_size",
    "main_first",
    "setup",
    "teardown",
    "local_batch_size",
    "gather",
    "backward_loss",
    "broadcast_object",
    "broadcast_buffers",
    "wrap",
]

# A process waits this long in a collective, e.g. while rank 0 alone loads (downloads) a dataset or scores codes.
TIMEOUT = timedelta(hours=1)


def launched() -> bool:
    """Whether a launcher such as torchrun started this process as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether a process group of more than one process is running (``torch.distributed.is_initialized``)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of processes training together (``torch.distributed.get_world_size``); 1 without a group."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (``torch.distributed.get_rank``); 0 without a group."""
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes checkpoints, metrics, logs and progress bars."""
    return rank() == 0


def local_world_size() -> int:
    """The processes torchrun started on this machine (``LOCAL_WORLD_SIZE``); 1 without torchrun."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


@contextmanager
def main_first():
    """Run the block on rank 0, then on the others: one process downloads and unpacks, the rest read."""
    if active() and not is_main():
        dist.barrier()
    yield
    if active() and is_main():
        dist.barrier()


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (``torch.distributed.init_process_group``).

    NCCL on CUDA, each process on the GPU ``LOCAL_RANK``; gloo on a CPU. Returns this process's device.
    """
    if not launched() or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    atexit.register(teardown)  # also when the command fails; teardown is idempotent
    return device


def teardown() -> None:
    """Leave the process group, if one was joined (``torch.distributed.destroy_process_group``)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(batch_size: int) -> int:
    """Each process's share of the global ``batch_size``; a batch that does not split evenly is refused."""
    n = world_size()
    if batch_size % n:
        raise ValueError(
            f"batch_size {batch_size} does not split evenly over {n} processes: "
            f"give a multiple of {n} (--batch-size is the global batch)"
        )
    return batch_size // n


def gather(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each tensor's rows from every process, in rank order (``torch.distributed.all_gather``).

    Processes may hold different numbers of rows. Gradients flow to this
    process's own rows only: the others arrive as plain values.
    """
    if not active():
        return tensors
    first = tensors[0]
    sizes = [torch.zeros(1, dtype=torch.long, device=first.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([len(first)], device=first.device))
    sizes = [int(s) for s in sizes]
    return tuple(_gather_padded(t, sizes) for t in tensors)


def _gather_padded(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """All processes' ``x`` of ``sizes`` rows, padded to the largest for ``torch.distributed.all_gather``."""
    padded = x.detach().new_zeros((max(sizes), *x.shape[1:]))
    padded[: len(x)] = x.detach()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    parts[rank()] = x  # this process's rows keep their autograd graph
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])


def backward_loss(loss: torch.Tensor) -> torch.Tensor:
    """What this process back-propagates: N times the global batch's loss (the loss itself on one process).

    Every process computes the loss of the whole gathered batch but its
    gradient reaches only its own codes; DistributedDataParallel averages
    the N parameter gradients, so N times the loss gives their sum, the
    gradient of one process over the global batch.
    """
    return loss * world_size() if active() else loss


def broadcast_object(value):
    """Rank 0's ``value`` on every process (``torch.distributed.broadcast_object_list``)."""
    if not active():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers of ``module`` to every process, in place (``torch.distributed.broadcast``)."""
    if not active():
        return
    for buffer in module.buffers():
        if buffer.is_contiguous():
            dist.broadcast(buffer, src=0)
        else:
            part = buffer.contiguous()
            dist.broadcast(part, src=0)
            buffer.copy_(part)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The network as each process trains it: DistributedDataParallel (``torch.nn.parallel``), SyncBatchNorm on CUDA.

    Without a group, the network itself. On a CPU BatchNorm keeps each process's statistics (SyncBatchNorm needs a GPU).
    """
    if not active():
        return model
    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # replaces the BatchNorm children in place
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
