"""Devices: pick_device's decisions (CUDA availability patched), the process group it implies, and every
--device path run on the CPU with the same numbers as before."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from growmerge.device import autocast, check_spec, enable_tf32, pick_device
from growmerge.errors import GrowmergeError
from test_eval_pairs import assert_one_line_error, run_main
from test_train import SMALL, losses, random_shard, write_job


@pytest.fixture
def gpus(monkeypatch):
    """gpus(n): torch reports n CUDA devices (0 = none); no LOCAL_RANK unless a test sets one."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)

    def have(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return have


@pytest.mark.parametrize("spec,n,local,want", [
    ("auto", 0, None, "cpu"),
    ("auto", 2, None, "cuda:0"),
    ("auto", 2, "1", "cuda:1"),  # torchrun: each local process its own GPU
    ("cpu", 2, "1", "cpu"),
    ("cuda", 1, None, "cuda:0"),
    ("cuda", 4, "3", "cuda:3"),
    ("cuda:1", 2, None, "cuda:1"),
    ("cuda:1", 2, "0", "cuda:1"),  # an explicit index wins over LOCAL_RANK
    (" CUDA:0 ", 1, None, "cuda:0"),
])
def test_pick_device_decisions(gpus, monkeypatch, spec, n, local, want):
    gpus(n)
    if local is not None:
        monkeypatch.setenv("LOCAL_RANK", local)
    assert pick_device(spec) == torch.device(want)


def test_pick_device_accepts_a_torch_device(gpus):
    gpus(1)
    assert pick_device(torch.device("cuda", 0)) == torch.device("cuda:0")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    assert pick_device() == torch.device("cuda:0")  # the default is auto


@pytest.mark.parametrize("spec,n,local,needle", [
    ("cuda", 0, None, "no CUDA device"),
    ("cuda:0", 0, None, "no CUDA device"),
    ("cuda:2", 2, None, "use cuda:0 to cuda:1"),
    ("auto", 2, "2", "at most 2 processes per node"),
    ("gpu", 1, None, "auto, cpu, cuda or cuda:N"),
    ("cuda:x", 1, None, "auto, cpu, cuda or cuda:N"),
    ("", 1, None, "auto, cpu, cuda or cuda:N"),
])
def test_pick_device_refusals_are_one_line(gpus, monkeypatch, spec, n, local, needle):
    gpus(n)
    if local is not None:
        monkeypatch.setenv("LOCAL_RANK", local)
    with pytest.raises(GrowmergeError, match=needle) as err:
        pick_device(spec)
    assert "\n" not in str(err.value)


def test_check_spec_looks_at_no_hardware(gpus):
    gpus(0)
    assert check_spec("cuda:3") == "cuda:3"  # valid form: resolved (and refused) only where the work runs


@pytest.mark.parametrize("backend,n,spec,want", [("nccl", 2, "auto", "cuda:1"), ("gloo", 0, "auto", "cpu"),
                                                 ("gloo", 2, "cpu", "cpu")])
def test_setup_under_torchrun_picks_the_process_group_for_the_device(gpus, monkeypatch, backend, n, spec, want):
    from growmerge.train import distributed

    gpus(n)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    joined, current = [], []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", joined.append)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    d = distributed.setup(spec)
    assert joined == [backend] and (d.rank, d.world, d.device) == (3, 4, torch.device(want))
    assert current == ([torch.device(want)] if want != "cpu" else [])


def test_one_process_uses_the_gpu_without_torchrun(gpus, monkeypatch):
    from growmerge.train import distributed

    gpus(1)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *a: pytest.fail("no group for one process"))
    d = distributed.setup()
    assert (d.world, d.device) == (1, torch.device("cuda:0"))
    gpus(0)
    assert distributed.setup().device == torch.device("cpu")


def test_autocast_follows_the_device_and_float32_is_off(monkeypatch):
    cpu = torch.device("cpu")
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(cpu, torch.float32):
        assert (a @ b).dtype == torch.float32
    with autocast(cpu, None):
        assert (a @ b).dtype == torch.float32
    with autocast(cpu, torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    made = []  # on a GPU: CUDA's autocast (not entered here: there is no GPU)
    monkeypatch.setattr(torch, "autocast", lambda kind, **kw: made.append((kind, kw)))
    autocast(torch.device("cuda", 0), torch.bfloat16)
    assert made == [("cuda", {"dtype": torch.bfloat16, "enabled": True})]


@pytest.fixture
def ieee():
    """IEEE float32 matmuls and convolutions during the test, the process's settings restored after."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = matmul.fp32_precision, conv.fp32_precision
    matmul.fp32_precision = conv.fp32_precision = "ieee"
    yield matmul, conv
    matmul.fp32_precision, conv.fp32_precision = saved


def test_tf32_only_on_cuda(ieee):
    matmul, conv = ieee
    assert not enable_tf32(torch.device("cpu")) and matmul.fp32_precision == conv.fp32_precision == "ieee"
    assert enable_tf32(torch.device("cuda", 0))
    assert matmul.fp32_precision == conv.fp32_precision == "tf32"


# ---------------------------------------------------------------------------------------------
# every --device path on the CPU
# ---------------------------------------------------------------------------------------------
def test_train_on_cpu_explicitly_is_the_auto_run_bit_for_bit(tmp_path, monkeypatch, capsys):
    shard = random_shard(tmp_path / "d.bin")
    spec = dict(steps=4, checkpoint_every_steps=2)
    job = write_job(tmp_path / "job.yaml", shard, tmp_path / "auto", **spec)
    assert run_main(monkeypatch, capsys, "train", job, "--quiet")[0] == 0
    job_cpu = write_job(tmp_path / "cpu.yaml", shard, tmp_path / "cpu", device="cpu", **spec)
    assert run_main(monkeypatch, capsys, "train", job_cpu, "--quiet")[0] == 0
    assert losses(tmp_path / "cpu") == losses(tmp_path / "auto")
    # the device is not part of the run's identity: the finished run is the same run, a no-op
    code, out, _ = run_main(monkeypatch, capsys, "train", job, "--device", "cpu", "--quiet")
    assert code == 0 and out.strip() == str(tmp_path / "auto")
    assert_one_line_error(run_main(monkeypatch, capsys, "train", job, "--device", "cuda", "--quiet"), "no CUDA device")
    assert_one_line_error(run_main(monkeypatch, capsys, "train", job, "--device", "gpu"), "cuda:N")
    bad = write_job(tmp_path / "bad.yaml", shard, tmp_path / "bad", device="tpu")
    assert_one_line_error(run_main(monkeypatch, capsys, "train", bad), "bad.yaml: device")


def test_fingerprint_ignores_the_device():
    from growmerge.train.spec import TrainSpec

    assert TrainSpec(**SMALL).fingerprint("tiny", []) == TrainSpec(**SMALL, device="cuda:1").fingerprint("tiny", [])


def test_scorer_on_cpu_explicitly_scores_as_before(tiny_llama):
    from growmerge.evaluate.scorer import Scorer

    model = tiny_llama()
    pairs = [("The quick brown fox jumps.", "The quick brown foxes jumps."), ("Koer hüppab.", "Koer hüppavad.")]
    auto = Scorer.from_dir(model).score_minimal_pairs(pairs)
    cpu = Scorer.from_dir(model, device="cpu")
    assert cpu.device == torch.device("cpu") and cpu.score_minimal_pairs(pairs) == auto
    with pytest.raises(GrowmergeError, match="no CUDA device"):
        Scorer.from_dir(model, device="cuda")


def test_eval_and_clone_verify_take_a_device(tiny_llama, tmp_path, monkeypatch, capsys):
    from growmerge.evaluate.perturb.sets import write_jsonl

    model = tiny_llama()
    la = tmp_path / "la.jsonl"
    write_jsonl([{"good": "The dog runs.", "bad": "The dog run."}, {"good": "Dogs run.", "bad": "Dogs runs."}], la)
    rows = {}
    for device in ("auto", "cpu"):
        code, out, err = run_main(monkeypatch, capsys, "eval", model, "--lang", "en", "--la", la,
                                  "--device", device, "--json", tmp_path / f"{device}.json")
        assert code == 0, err
        rows[device] = (tmp_path / f"{device}.json").read_text()
    assert rows["cpu"] == rows["auto"]
    assert_one_line_error(run_main(monkeypatch, capsys, "eval", model, "--lang", "en", "--la", la, "--device", "cuda"),
                          "no CUDA device")
    code, out, err = run_main(monkeypatch, capsys, "clone", model, tmp_path / "x2", "--factor", "2", "--verify",
                              "--device", "cpu")
    assert code == 0 and "(float32, cpu)" in out, err
    assert float(out.split("max |Δlogit| = ")[1].split()[0]) <= 1e-4
    assert_one_line_error(run_main(monkeypatch, capsys, "clone", model, tmp_path / "x3", "--factor", "2", "--verify",
                                   "--device", "cuda"), "no CUDA device")
    assert not (tmp_path / "x3").exists()  # refused before anything was written


def test_gpu_bench_runs_on_the_cpu_at_its_small_size():
    """bench/gpu.py works the day a GPU is at hand; here it must run, and must not print a GPU number.
    Small shapes and no torch.compile (compiling on a 2-core CPU takes ~1.5 minutes) keep it < 60 s."""
    script = Path(__file__).resolve().parents[1] / "bench" / "gpu.py"
    r = subprocess.run([sys.executable, str(script), "--small", "--no-compile", "--repeats", "1"], capture_output=True,
                       text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert out.count("tok/s  MFU") == 2 and "decisions identical: True" in out and "ties" in out, out
    if not torch.cuda.is_available():
        assert "no GPU here" in out and "cuda" not in out.lower() and "vs cpu" not in out, out
