"""One training step's batch: clean images drawn, a job per sample, the job's degraded inputs.

Each step draws one job (a task or a mix; uniformly, as the authors do, unless ``task_weights`` says
otherwise) for the whole batch, or with ``mixed_batch=True`` one job per sample. The samples are grouped by
job (``parts``) so that each job's loss sees its own slice, and the network still runs one forward pass
with per-sample task vectors.
"""
from dataclasses import dataclass

import torch

from filmmtl.tasks import TASKS, make_input


@dataclass
class Part:
    """The samples ``start:stop`` of a batch, all of ``job``; ``region`` is completion's hole (or None)."""
    job: str
    start: int
    stop: int
    region: torch.Tensor = None


@dataclass
class Batch:
    """Degraded ``inputs``, task ``vectors``, clean ``images`` and ``masks``, ordered by job; ``jobs`` lists
    the jobs of the global batch (a shard keeps the whole list, so that every process logs them alike)."""
    inputs: torch.Tensor
    vectors: torch.Tensor
    images: torch.Tensor
    masks: torch.Tensor
    parts: list
    jobs: list

    def __len__(self):
        return len(self.inputs)


def draw_jobs(jobs, weights, batch_size, per_sample, rng):
    """A job per sample, drawn by ``weights``: one for the whole batch, or one each (``per_sample``)."""
    if per_sample:
        picks = torch.multinomial(weights, batch_size, replacement=True, generator=rng)
    else:
        picks = torch.multinomial(weights, 1, generator=rng).expand(batch_size)
    return [jobs[i] for i in picks.tolist()]


def noisy_identity(images, jobs, share, rng):
    """Each reconstruction sample becomes, with probability ``share``, restoration's noisy image: its input
    and its target. Why: trained on clean images only, c = 0 smooths a noisy input, so the restoration
    slider starts part of the way to the clean image. Draws nothing when ``share`` is 0."""
    recon = [i for i, job in enumerate(jobs) if job == "reconstruction"]
    if not share or not recon:
        return images
    picked = torch.tensor(recon)[torch.rand(len(recon), generator=rng) < share].to(images.device)
    images = images.clone()
    images[picked] = TASKS["restoration"].make_input(images[picked], rng)[0]
    return images


def make_batch(train_set, space, jobs, weights, config, rng, device):
    """The global batch of one step (every process draws the same one: same seed, same ``rng``)."""
    index = torch.randint(len(train_set), (config["batch_size"],), generator=rng)
    images, masks = (t.to(device) for t in train_set.batch(index))
    drawn = draw_jobs(jobs, weights, config["batch_size"], config["mixed_batch"], rng)
    images = noisy_identity(images, drawn, config["identity_noise"], rng)
    groups = {}
    for i, job in enumerate(drawn):
        groups.setdefault(job, []).append(i)
    parts, inputs, order = [], [], []
    for job, samples in groups.items():
        samples = torch.tensor(samples, device=device)
        degraded, region = make_input(job.split("+"), images[samples], rng)
        start = parts[-1].stop if parts else 0
        parts.append(Part(job, start, start + len(samples), region))
        inputs.append(degraded)
        order.append(samples)
    vectors = torch.stack([space.vector(p.job) for p in parts for _ in range(p.stop - p.start)]).to(device)
    order = torch.cat(order)
    return Batch(torch.cat(inputs), vectors, images[order], masks[order], parts, list(groups))
