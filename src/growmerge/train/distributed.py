"""One entry point for 1 process and for torchrun: DDP by default, FSDP2 with ``fsdp``.

The device is ``growmerge.device.pick_device``'s: one process trains on one GPU without torchrun.
Under torchrun (WORLD_SIZE > 1, one or several nodes) each process takes the GPU of its LOCAL_RANK
and the process group is NCCL on GPUs, gloo on CPUs. FSDP2 shards each
decoder layer with ``fully_shard`` and puts the embeddings, final norm and lm_head in the root group,
so the tied embedding/lm_head parameter stays one parameter.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from growmerge.device import pick_device


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, x: float) -> float:
        """Mean of a float over ranks."""
        if self.world == 1:
            return x
        t = torch.tensor([x], dtype=torch.float64, device=self.device)  # NCCL reduces GPU tensors only
        dist.all_reduce(t)
        return float(t.item()) / self.world


def setup(device: str = "auto") -> Dist:
    """This process's device, and the torchrun process group when there is one."""
    dev = pick_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # NCCL and unqualified "cuda" tensors use the current device
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(device=dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), world, dev)


def wrap(model, d: Dist, fsdp: bool):
    """Return the module the loop calls (DDP/FSDP2-wrapped when distributed).

    `model` is the loss module (train.loss.CausalLMLoss) around the causal LM.
    """
    if d.world == 1:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in model.lm.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[d.device] if d.device.type == "cuda" else None)


def unwrapped(module):
    """The causal LM inside the DDP wrapper and the loss module."""
    inner = getattr(module, "module", module)
    return getattr(inner, "lm", inner)


def grad_sync(module, enabled: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if hasattr(module, "no_sync"):  # DDP
        return contextlib.nullcontext() if enabled else module.no_sync()
    if hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        module.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()
