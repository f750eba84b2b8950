"""torchrun with 2 processes on the CPU (gloo): one step equals one process's step on the global batch, only
rank 0 writes, the checkpoint says world_size 2, and resuming stays exact."""
import json
import os
import subprocess
import sys

import torch

from filmmtl.train import Trainer

PROBE = r'''
import sys, torch
from filmmtl.train import Trainer
out = sys.argv[1]
settings = dict(profile="smoke", quiet=True, batch_size=4, eval_every=0, steps=4, checkpoint_every=100)
first = Trainer(**settings)
loss = first.step()
straight = Trainer(**settings).fit()
half = Trainer(**settings).fit(steps=2, checkpoint=out + ".half.pt")
torch.distributed.barrier()  # rank 0 has written the checkpoint
resumed = Trainer(**settings).load(out + ".half.pt").fit()
if first.rank == 0:
    torch.save({"grads": [p.grad for p in first.model.parameters()],
                "loss": loss,
                "straight": [p.detach() for p in straight.model.parameters()],
                "resumed": [p.detach() for p in resumed.model.parameters()],
                "world_size": first.world_size}, out)
torch.distributed.barrier()  # leave together, and leave the group before exit (gloo aborts otherwise)
torch.distributed.destroy_process_group()
'''


def torchrun(tmp_path, *args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_take_one_process_step_on_the_global_batch(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    result = torchrun(tmp_path, str(tmp_path / "probe.py"), str(tmp_path / "ddp.pt"))
    assert result.returncode == 0, result.stderr[-3000:]
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert ddp["world_size"] == 2
    single = Trainer(profile="smoke", quiet=True, batch_size=4, eval_every=0, steps=4, checkpoint_every=100)
    loss = single.step()
    def close(a, b):  # the same up to float summation order (the batch is summed in two halves)
        a, b = torch.cat([t.flatten() for t in a]), torch.cat([t.flatten() for t in b])
        return float((a - b).norm()) <= 1e-5 * float(b.norm())
    params = list(single.model.parameters())
    assert [g is None for g in ddp["grads"]] == [p.grad is None for p in params]
    assert close([g for g in ddp["grads"] if g is not None], [p.grad for p in params if p.grad is not None])
    # (Weights after Adam's first step are not compared: it moves each weight by about lr x the sign of its
    # gradient, and the biases before an instance norm have a true gradient of 0, so float noise decides.)
    assert ddp["loss"].keys() == loss.keys()  # the same job, and the same loss over the global batch
    assert all(abs(ddp["loss"][j] - loss[j]) <= 1e-5 * abs(loss[j]) for j in loss)
    for a, b in zip(ddp["straight"], ddp["resumed"]):  # exact resume under torchrun
        assert torch.equal(a, b)


def test_torchrun_cli_writes_once_and_records_the_world_size(tmp_path):
    out = tmp_path / "run.pt"
    result = torchrun(tmp_path, "-m", "filmmtl", "train", "--profile", "smoke", "--out", str(out), "--quiet",
                      "--steps", "2", "--set", "batch_size=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("saved") == 1  # rank 0 alone
    state = torch.load(out, weights_only=True)
    assert state["provenance"]["world_size"] == 2 and state["step"] == 2
    assert json.loads(out.with_suffix(".json").read_text())["command"].startswith("torchrun --nproc_per_node 2")
    odd = torchrun(tmp_path, "-m", "filmmtl", "train", "--profile", "smoke", "--out", str(tmp_path / "odd.pt"),
                   "--quiet", "--set", "batch_size=3")
    assert odd.returncode != 0 and "must be divisible by the 2 processes" in odd.stderr
