"""What a training step minimises: each job's loss, as its task's registration says, summed over a batch.

A task names its losses (``Task.losses``): its main loss, a name in ``TASK_LOSSES`` or a callable
``loss(output, target)``, then optionally "adversarial" (a conditional PatchGAN of its own, weighted
``adversarial_weight``). Mixes follow the paper's methods: 2 = the sum of the parts' losses, L_A + L_B;
3 = L2 to method 3's teacher image (its style parts made by the network itself, no gradient).
"""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from filmmtl import distributed, losses
from filmmtl.tasks import MIXES, TASKS, job_target, method2_loss

ADVERSARIAL = "adversarial"


def l2(objective, key, output, images, masks, region):
    """Mean squared error to the task's target; completion's hole (``region``) weighs ``hole_weight``."""
    target = job_target(key, images, masks)
    if region is None or objective.hole_weight == 1:
        return F.mse_loss(output, target)
    pixels = 1 + (objective.hole_weight - 1) * region.to(output.dtype)
    return ((output - target).square() * pixels).sum() / (pixels.sum() * output.shape[1])


def perceptual(objective, key, output, images, masks, region):
    """Johnson's perceptual loss: the clean image's content, the task's painting's style."""
    return objective.perceptual(output, images, TASKS[key].style)


TASK_LOSSES = {"l2": l2, "perceptual": perceptual}


def main_loss(task):
    """The task's main loss as registered, or a clear error naming what a task may list."""
    name = task.losses[0] if task.losses else None
    if callable(name) or name in TASK_LOSSES:
        return name
    raise ValueError(f"task {task.key!r} lists losses {task.losses}: the first must be one of {sorted(TASK_LOSSES)} "
                     f"or a callable loss(output, target), optionally followed by {ADVERSARIAL!r}")


def check_losses(space):
    """Every task of a run names a loss training knows, checked before the first step (not hours into a run)."""
    for key in space:
        main_loss(TASKS[key])


@dataclass
class Objective:
    """What a job's loss needs besides the batch: the config's weights, the perceptual network (style
    tasks), a discriminator per adversarial task, and ``stylise(key, images)`` (method 3's teachers)."""
    method: int
    hole_weight: float
    adversarial_weight: float
    perceptual: torch.nn.Module
    discriminators: torch.nn.ModuleDict
    stylise: Callable

    def task_loss(self, key, output, images, masks, region=None):
        """Task ``key``'s main loss of ``output`` for clean ``images``."""
        loss = main_loss(TASKS[key])
        if callable(loss):
            return loss(output, job_target(key, images, masks))
        return TASK_LOSSES[loss](self, key, output, images, masks, region)

    def job_loss(self, job, output, images, masks, inputs, region=None):
        """A task's loss (with its adversarial term) or a mix's, by the configured method."""
        if job in MIXES:
            if self.method == 2:
                return method2_loss(MIXES[job], output, images, masks, self.task_loss)
            return F.mse_loss(output, job_target(job, images, masks, self.stylise))
        loss = self.task_loss(job, output, images, masks, region)
        if job in self.discriminators:
            w = self.adversarial_weight
            loss = (1 - w) * loss + w * losses.adversarial_loss(self.discriminators[job], inputs, output)
        return loss


def discriminators_for(space, config):
    """A PatchGAN per task that lists the adversarial loss (none when its weight is 0)."""
    return torch.nn.ModuleDict({key: losses.PatchDiscriminator(width=config["width"]) for key in space
                                if ADVERSARIAL in TASKS[key].losses and config["adversarial_weight"] > 0})


def multitask_loss(objective, batch, output):
    """(the batch's loss, to backpropagate; per job of ``batch.jobs``: [loss x samples, samples], to log).
    Each job's loss is a mean over its samples, weighted by its share of the batch."""
    total = 0.0
    sums = torch.zeros(2 * len(batch.jobs), device=output.device)
    for part in batch.parts:
        n, rows = part.stop - part.start, slice(part.start, part.stop)
        loss = objective.job_loss(part.job, output[rows], batch.images[rows], batch.masks[rows],
                                  batch.inputs[rows], part.region)
        k = batch.jobs.index(part.job)
        sums[2 * k], sums[2 * k + 1] = loss.detach() * n, n
        total = total + loss * n / len(batch)
    return total, sums


def discriminator_step(objective, optimiser, batch, output, world_size):
    """One update of the adversarial tasks' discriminators on (input, output) vs (input, target) pairs."""
    if optimiser is None:
        return
    d_loss = 0.0
    for part in batch.parts:
        if part.job in objective.discriminators:
            rows = slice(part.start, part.stop)
            target = job_target(part.job, batch.images[rows], batch.masks[rows])
            d_loss = d_loss + losses.discriminator_loss(objective.discriminators[part.job], batch.inputs[rows],
                                                        output[rows], target)
    if torch.is_tensor(d_loss):
        optimiser.zero_grad(set_to_none=True)
        d_loss.backward()
        distributed.average_gradients(objective.discriminators.parameters(), world_size)
        optimiser.step()
