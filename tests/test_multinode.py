"""Several nodes: 2 nodes x 1 process on localhost through torchrun's c10d rendezvous (gloo) train what
one process trains, also when both nodes are killed after a checkpoint and started again."""

from __future__ import annotations

import os
import socket
import subprocess

import numpy as np
import pytest

from growmerge.data.mixture import Mixture, MixtureItem
from growmerge.errors import GrowmergeError
from growmerge.train.launch import torchrun_command
from growmerge.train.loop import train
from growmerge.train.spec import TrainSpec
from test_train import SMALL, killed_at, losses, random_shard, write_job

SPEC = {**SMALL, "steps": 6, "checkpoint_every_steps": 3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_nodes(job, endpoint: str, env: dict, timeout: int = 150) -> list[tuple[int, str]]:
    """Both nodes' torchrun commands side by side, as two machines would run them: (exit code, output)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **env}
    logs = [job.with_name(f"node{r}.log") for r in (0, 1)]
    procs = []
    try:
        for r, log in enumerate(logs):
            with open(log, "w") as f:  # a file, not a pipe: a full pipe would stall a node mid-collective
                cmd = torchrun_command(job, 1, nnodes=2, node_rank=r, rdzv_endpoint=endpoint) + ["--quiet"]
                procs.append(subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT))
        codes = [p.wait(timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return [(c, log.read_text()[-3000:]) for c, log in zip(codes, logs)]


def test_two_nodes_match_one_process_through_a_kill_and_resume(tmp_path):
    shard = random_shard(tmp_path / "d.bin")
    one = train(None, Mixture(items=[MixtureItem(shard=shard, name="x")]), TrainSpec(**SPEC), tmp_path / "one",
                progress=False)
    job = write_job(tmp_path / "job.yaml", shard, tmp_path / "two", **SPEC)
    endpoint = f"127.0.0.1:{free_port()}"

    killed = run_nodes(job, endpoint, killed_at("step:5", tmp_path))  # every rank dies after step 5
    assert all(code != 0 for code, _ in killed), killed
    step3 = tmp_path / "two.partial" / "checkpoints" / "step-3"
    assert (step3 / "state" / "trainer.json").is_file() and not (tmp_path / "two").exists()
    written = (step3 / "model.safetensors").stat().st_ino

    done = run_nodes(job, endpoint, {})  # the same commands again: --resume continues from step 3
    assert all(code == 0 for code, _ in done), done
    # resumed, not restarted: step 3's export is the file the killed run wrote
    assert (tmp_path / "two" / "checkpoints" / "step-3" / "model.safetensors").stat().st_ino == written
    got, want = np.array(losses(tmp_path / "two")), np.array(losses(one))
    assert len(got) == len(want) == 6
    diff = float(np.max(np.abs(got - want)))
    print(f"2 nodes x 1 process vs 1 process: max |loss difference| {diff:.2e}")
    assert diff <= 1e-5


def test_torchrun_command_forms(tmp_path):
    job = tmp_path / "j.yaml"
    one = torchrun_command(job, 2)
    assert one[1:] == ["-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2", "--standalone",
                       "-m", "growmerge.train", str(job.resolve()), "--resume"]
    a = torchrun_command(job, 4, nnodes=2, node_rank=0, rdzv_endpoint="node0:29400", resume=False)
    b = torchrun_command(job, 4, nnodes=2, node_rank=1, rdzv_endpoint="node0:29400", resume=False)
    assert "--rdzv-backend=c10d" in a and "--rdzv-endpoint=node0:29400" in a and "--resume" not in a
    assert "--rdzv-conf=is_host=1" in a and "--rdzv-conf=is_host=0" in b  # node 0 hosts the store
    assert [x for x in a if x.startswith("--rdzv-id")] == [x for x in b if x.startswith("--rdzv-id")]
    assert "--rdzv-id=mine" in torchrun_command(job, 1, 2, 1, "h:1", rdzv_id="mine")


@pytest.mark.parametrize("kwargs,needle", [
    (dict(nproc_per_node=0), "at least one node"),
    (dict(nproc_per_node=1, nnodes=2, node_rank=2, rdzv_endpoint="h:1"), "outside 0..1"),
    (dict(nproc_per_node=1, nnodes=2), "rendezvous endpoint"),
    (dict(nproc_per_node=1, nnodes=2, rdzv_endpoint="node0"), "not host:port"),
    (dict(nproc_per_node=1, nnodes=2, rdzv_endpoint="node0:http"), "not host:port"),
])
def test_torchrun_command_refusals(tmp_path, kwargs, needle):
    with pytest.raises(GrowmergeError, match=needle):
        torchrun_command(tmp_path / "j.yaml", **kwargs)
