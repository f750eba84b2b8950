"""A seventh task for the price of one generator column.

The paper's claim in numbers: with a one-layer generator, ``(gamma, beta) = W c + b``, so a task is one
column of ``W``: two numbers per modulated channel (3,200 at the paper's width). ``with_task`` gives a
trained network one more element of the task vector (its column zero: the new task starts as the
identity); ``fit_new_task`` trains only that column, everything else frozen, so the old tasks' outputs do
not change by a single bit. ``what="all"`` fine-tunes the whole network instead, the comparison that shows
what the column saves (and what fine-tuning costs the old tasks).
"""
import copy

import torch
import torch.nn.functional as F

from filmmtl.models import FiLMNet
from filmmtl.tasks import TASKS, TaskSpace, job_target


def with_task(model, space, key):
    """(a copy of ``model`` that takes ``key`` as one more task, the new TaskSpace). The generator's first
    layer gets one more input column, zero, so every old task vector gives exactly the old output."""
    if not isinstance(model, FiLMNet):
        raise TypeError(f"a new task is a new generator column: it needs a FiLM network, got {type(model).__name__}")
    if key not in TASKS or TASKS[key].make_target is None:
        raise ValueError(f"{key!r} is not a registered task with a target image; "
                         f"choose one of {sorted(k for k, t in TASKS.items() if t.make_target and k not in space)}")
    if key in space:
        raise ValueError(f"the network already has the task {key!r}")
    grown = copy.deepcopy(model)
    old = grown.generator.mlp[0]
    first = torch.nn.Linear(old.in_features + 1, old.out_features).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, :-1] = old.weight
        first.bias.copy_(old.bias)
    grown.generator.mlp[0] = first
    grown.generator.n_tasks = grown.n_tasks = old.in_features + 1
    return grown, TaskSpace(list(space) + [key])


def column_size(model):
    """Parameters one task costs this network: a column of the generator's first layer."""
    return model.generator.mlp[0].out_features


def trainable(model, what):
    """(the parameters ``fit_new_task`` trains, the others frozen; a hook to remove after training): the new
    column only, or everything."""
    for p in model.parameters():
        p.requires_grad_(what == "all")
    if what == "all":
        return list(model.parameters()), None
    weight = model.generator.mlp[0].weight
    weight.requires_grad_(True)
    last = torch.zeros_like(weight)
    last[:, -1] = 1
    # every other column's gradient is zero, so Adam never moves it (its moments stay zero)
    return [weight], weight.register_hook(lambda grad: grad * last)


def fit_new_task(model, space, key, train, steps, what="column", lr=1e-3, batch_size=8, seed=0):
    """Train task ``key`` of ``model`` (from ``with_task``) on ``train`` (an ImageSet) with its L2 loss;
    ``what``: "column" (its generator column alone) or "all" (the whole network). Returns the losses."""
    if what not in ("column", "all"):
        raise ValueError(f"what must be 'column' or 'all', got {what!r}")
    device = next(model.parameters()).device
    parameters, hook = trainable(model, what)
    optimiser = torch.optim.Adam(parameters, lr=lr)
    rng = torch.Generator().manual_seed(seed)
    vector = space.vector(key).to(device)
    losses = []
    model.train()
    for _ in range(steps):
        images, masks = train.batch(torch.randint(len(train), (batch_size,), generator=rng))
        inputs, _ = TASKS[key].make_input(images, rng)
        target = job_target(key, images, masks)
        loss = F.mse_loss(model(inputs.to(device), vector), target.to(device))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    if hook is not None:
        hook.remove()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return losses
