"""The torchrun command line of a training job, on one node or several.

    torchrun_command(job, nproc_per_node=4)                                        # one node
    torchrun_command(job, 8, nnodes=2, node_rank=r, rdzv_endpoint="node0:29400")  # run on every node

Each node runs the same command but for its ``node_rank``; the nodes meet through torch's c10d
rendezvous at ``rdzv_endpoint``, a host:port of node 0 that every node reaches, so no
MASTER_ADDR/MASTER_PORT is set by hand. Node 0 hosts the rendezvous store (``is_host``): torch would
guess the host from the endpoint's name, which fails for an alias and races when several nodes share
one machine. c10d numbers the processes itself, so torchrun's ``--node-rank`` (which it ignores with
c10d, with a warning) is not passed. One node without an endpoint uses
``--standalone``: a free port of its own, so two jobs on one machine never collide. The job YAML
(TrainSpec fields + mixture, out, tokenizer, meta; see ``train.commands``) says DDP or FSDP2
(``fsdp:``) and the device; ``--resume`` makes a restarted command continue from the newest
complete checkpoint (and start afresh when there is none), so a killed job is simply run again.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from growmerge.errors import GrowmergeError


def torchrun_command(job_yaml: Path, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
                     rdzv_endpoint: str | None = None, rdzv_id: str | None = None, resume: bool = True) -> list[str]:
    """argv that trains `job_yaml` with `nproc_per_node` processes on this node, one of `nnodes`.

    `rdzv_id` names the run at the rendezvous (default: derived from the job file's absolute path,
    which every node of the job sees alike on a shared filesystem).
    """
    job = Path(job_yaml).resolve()
    if nproc_per_node < 1 or nnodes < 1:
        raise GrowmergeError(f"torchrun needs at least one node and one process per node "
                             f"(got nnodes={nnodes}, nproc_per_node={nproc_per_node})")
    if not 0 <= node_rank < nnodes:
        raise GrowmergeError(f"node_rank {node_rank} is outside 0..{nnodes - 1} for {nnodes} node(s)")
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nnodes}", f"--nproc-per-node={nproc_per_node}"]
    if rdzv_endpoint is None:
        if nnodes > 1:
            raise GrowmergeError(f"{nnodes} nodes need a rendezvous endpoint host:port that every node reaches "
                                 "(e.g. the first node's address and a free port)")
        cmd.append("--standalone")
    else:
        check_endpoint(rdzv_endpoint)
        rdzv_id = rdzv_id or "growmerge-" + hashlib.sha256(str(job).encode()).hexdigest()[:12]
        cmd += ["--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id}",
                f"--rdzv-conf=is_host={int(node_rank == 0)}"]
    return cmd + ["-m", "growmerge.train", str(job)] + (["--resume"] if resume else [])


def check_endpoint(endpoint: str) -> None:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise GrowmergeError(f"rendezvous endpoint {endpoint!r} is not host:port (e.g. node0:29400)")
