"""More than one device, on PyTorch's own engine: ``torchrun --nproc_per_node N -m filmmtl train ...``.

One process per device. Every process draws the same global batch (same seed, same random-number stream), makes
the same degraded inputs, and trains on its own contiguous shard of it; DistributedDataParallel averages
the network's gradients, so a step equals one process's step on the whole global batch (the losses are
means over samples). The small per-task discriminators are averaged by hand (one all-reduce per step).
Only rank 0 writes checkpoints, logs and the progress bar; every rank resumes from the same checkpoint.
"""
import dataclasses
import os

import torch
import torch.distributed as dist


def world():
    """(rank, world size), joining the process group that torchrun describes in the environment."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def leave():
    """Leave the process group together: a gloo process that exits inside it can abort ("terminate called
    without an active exception") while another rank is still writing."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_device(device):
    """This process's device: cuda:LOCAL_RANK under torchrun on a GPU machine."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(batch_size, rank, size):
    """This rank's slice of a global batch."""
    if batch_size % size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the {size} processes (the global batch "
                         "is split evenly); choose a multiple of the number of devices")
    per = batch_size // size
    return slice(rank * per, (rank + 1) * per)


def shard_batch(batch, rank, size):
    """This rank's contiguous share of a job-ordered ``batches.Batch``: its rows, and each job's part cut to
    them (a job may fall on both sides of a cut; one outside the share is left out)."""
    mine = shard(len(batch), rank, size)
    parts = []
    for part in batch.parts:
        low, high = max(part.start, mine.start), min(part.stop, mine.stop)
        if high > low:
            region = None if part.region is None else part.region[low - part.start:high - part.start]
            parts.append(dataclasses.replace(part, start=low - mine.start, stop=high - mine.start, region=region))
    return dataclasses.replace(batch, inputs=batch.inputs[mine], vectors=batch.vectors[mine],
                               images=batch.images[mine], masks=batch.masks[mine], parts=parts)


def average_gradients(parameters, size):
    """Average ``.grad`` over processes in place (what DDP does for the network)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if size > 1 and grads:
        flat = torch.cat([g.flatten() for g in grads])
        dist.all_reduce(flat)
        flat /= size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def total(values, size):
    """Sum a tensor over processes."""
    if size > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values
