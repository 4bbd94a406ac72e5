"""Training: schedule, FLOP ledger, data order, checkpoints, exact resume after SIGKILL, torchrun, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from growmerge.artifacts import read_meta, write_meta
from growmerge.data.mixture import Mixture, MixtureItem
from growmerge.errors import GrowmergeError
from growmerge.train.flops import flops_per_token
from growmerge.train.loop import train
from growmerge.train.observe import read_log
from growmerge.train.schedule import wsd_lambda, wsd_phases
from growmerge.train.spec import TrainSpec, preset_config

PY = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))


# ---------------------------------------------------------------------------------------------
# helpers: shards written per the growmerge.data.shards contract, and job YAMLs
# ---------------------------------------------------------------------------------------------
def write_shard(path: Path, rows: np.ndarray, vocab_size: int, tokenizer_hash: str = "t0") -> Path:
    """A complete packed shard: <name>.bin (flat token ids) + <name>.meta.json."""
    rows = np.asarray(rows)
    dtype = np.uint16 if vocab_size < 65_536 else np.uint32
    rows.astype(dtype).tofile(path)
    meta = {"dtype": np.dtype(dtype).name, "seq_len": rows.shape[1], "sequences": rows.shape[0],
            "tokens": int(rows.size), "documents": rows.shape[0], "characters": 0, "vocab_size": vocab_size,
            "tokenizer_hash": tokenizer_hash, "eos_id": 0, "complete": True}
    path.with_name(path.name.removesuffix(".bin") + ".meta.json").write_text(json.dumps(meta))
    return path


def random_shard(path: Path, n: int = 64, seq_len: int = 32, vocab: int = 96, seed: int = 0) -> Path:
    """Learnable random data: each row is a noisy arithmetic progression mod vocab."""
    rng = np.random.default_rng(seed)
    start, stride = rng.integers(0, vocab, (n, 1)), rng.integers(1, 4, (n, 1))
    rows = (start + stride * np.arange(seq_len)) % vocab
    return write_shard(path, rows, vocab)


SMALL = dict(init="tiny", steps=12, global_batch=8, micro_batch=2, lr=3e-3, checkpoint_every_steps=4, seed=1)


def write_job(path: Path, shard: Path, out: Path, **spec) -> Path:
    job = {**SMALL, **spec, "mixture": [{"shard": str(shard), "name": "x"}], "out": str(out)}
    path.write_text(yaml.safe_dump(job))
    return path


# Fault injection from outside the code under test: every Python process of a run (torchrun's workers
# too) imports this sitecustomize at start-up, and GROWMERGE_TEST_KILL makes it SIGKILL the process at
# "step:N" (step N done and logged, on every rank) or "checkpoint:N" (checkpoint N half written: the
# model export and the optimizer state are on disk, trainer.json and the final rename are not).
KILLER = '''
import os
import signal


def _install(kind, n):
    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if kind == "step":
        from growmerge.train import observe

        logged = observe.Observer.step

        def step(self, record):
            logged(self, record)
            if record["step"] == n:
                die()

        observe.Observer.step = step
    elif kind == "checkpoint":  # patched before growmerge.train.checkpoint imports it (no torch here)
        from growmerge import artifacts

        write = artifacts.write_json_atomic

        def write_json_atomic(path, data):
            if os.path.basename(path) == "trainer.json" and f"step-{n}.tmp" in str(path):
                die()
            write(path, data)

        artifacts.write_json_atomic = write_json_atomic
    else:
        raise SystemExit(f"GROWMERGE_TEST_KILL: unknown point {kind!r}")


if os.environ.get("GROWMERGE_TEST_KILL"):
    _kind, _, _n = os.environ["GROWMERGE_TEST_KILL"].partition(":")
    _install(_kind, int(_n))
'''


def killed_at(point: str, tmp_path: Path) -> dict:
    """Environment of a CLI subprocess (and its torchrun workers) that SIGKILLs itself at `point`."""
    site = tmp_path / "killer"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(KILLER)
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
            "GROWMERGE_TEST_KILL": point}


def run_cli(args: list[str], env: dict | None = None, torchrun: int = 0, timeout: int = 120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = ([TORCHRUN, "--standalone", f"--nproc-per-node={torchrun}", "-m", "growmerge.train"] if torchrun
           else [PY, "-m", "growmerge.train"]) + args + ["--quiet"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def losses(model_dir: Path) -> list[float]:
    return [r["loss"] for r in read_log(model_dir / "train_log.jsonl")]


# ---------------------------------------------------------------------------------------------
# schedule and FLOPs
# ---------------------------------------------------------------------------------------------
def test_wsd_boundaries_for_1000_steps():
    warm, decay = wsd_phases(1000)
    assert (warm, decay) == (10, 200)
    lam = [wsd_lambda(s, 1000, warm, decay) for s in range(1001)]
    assert lam[0] == 0.0 and lam[5] == pytest.approx(0.5)
    assert lam[9] < 1.0 and all(v == 1.0 for v in lam[10:801])
    assert lam[900] == pytest.approx(0.5) and lam[1000] == 0.0
    assert max(lam) == 1.0 and min(lam) == 0.0


def test_wsd_equals_transformers_linear_wsd():
    from transformers import get_wsd_schedule

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    hf = get_wsd_schedule(opt, num_warmup_steps=10, num_decay_steps=200, num_training_steps=1000,
                          decay_type="linear")
    for s in range(1000):
        assert wsd_lambda(s, 1000, 10, 200) == pytest.approx(hf.lr_lambdas[0](s), abs=1e-12), s


def test_warmup_is_a_fraction_of_long_runs():
    assert wsd_phases(100_000) == (200, 20_000)


@pytest.mark.parametrize("hidden,heads,kv,inter,expected", [(576, 9, 3, 1536, 1.505e9), (1152, 18, 6, 3072, 4.284e9)])
def test_flops_of_the_papers_shapes(hidden, heads, kv, inter, expected):
    config = preset_config("smollm2-180m", 128_256, 1, 2)
    config.hidden_size, config.num_attention_heads, config.num_key_value_heads = hidden, heads, kv
    config.intermediate_size, config.head_dim = inter, 64
    assert flops_per_token(config, 2048) == pytest.approx(expected, rel=0.005)


def test_180m_preset_has_180m_parameters():
    from transformers import LlamaForCausalLM

    with torch.device("meta"):
        model = LlamaForCausalLM(preset_config("smollm2-180m", 128_256, 1, 2))
    n = sum(p.numel() for p in model.parameters())
    assert 180e6 <= n <= 181e6 and model.config.tie_word_embeddings


# ---------------------------------------------------------------------------------------------
# data order
# ---------------------------------------------------------------------------------------------
def test_stream_order_is_seeded_and_counts_fractional_epochs(tmp_path):
    from growmerge.train.stream import open_stream

    a = write_shard(tmp_path / "a.bin", np.arange(10 * 4).reshape(10, 4), 64)
    b = write_shard(tmp_path / "b.bin", 100 + np.arange(20 * 4).reshape(20, 4), 256)
    mix = Mixture(items=[MixtureItem(shard=a, epochs=2, name="a"), MixtureItem(shard=b, epochs=0.5, name="b")])
    s1, s2, s3 = open_stream(mix, 7), open_stream(mix, 7), open_stream(mix, 8)
    assert len(s1) == 2 * 10 + 10
    assert torch.equal(s1.batch(0, 30), s2.batch(0, 30)) and not torch.equal(s1.batch(0, 30), s3.batch(0, 30))
    first_pass = s1.batch(0, 30)
    assert sorted(first_pass[:, 0].tolist()).count(0) == 2  # every row of `a` twice
    assert s1.vocab_size == 256 and s1.seq_len == 4
    assert s1.tokens_per_stream(30) == {"a": 80, "b": 40}
    assert s1.tokens_per_stream(60) == {"a": 160, "b": 80}
    assert torch.equal(s1.batch(25, 10)[:5], first_pass[25:])  # a budget beyond the mixture starts a new pass
    assert s1.tokens_per_stream(7) == {"a": 4 * int((s1.item_of[s1.indices(0, 7)] == 0).sum()),
                                       "b": 4 * int((s1.item_of[s1.indices(0, 7)] == 1).sum())}


# ---------------------------------------------------------------------------------------------
# a run: outputs, FLOPs ledger, no-op re-run
# ---------------------------------------------------------------------------------------------
def test_a_run_writes_loadable_checkpoints_with_cumulative_flops(tmp_path):
    from transformers import AutoModelForCausalLM

    shard = random_shard(tmp_path / "d.bin")
    spec = TrainSpec(**SMALL)
    out = train(None, Mixture(items=[MixtureItem(shard=shard, name="x")]), spec, tmp_path / "m",
                meta={"kind": "seed", "languages": ["code"]}, progress=False)
    assert not (tmp_path / "m.partial").exists()
    meta = read_meta(out)
    fpt = flops_per_token(AutoModelForCausalLM.from_pretrained(out).config, 32)
    assert meta["kind"] == "seed" and meta["languages"] == ["code"] and meta["parents"] == []
    assert meta["tokens"] == 12 * 8 * 32 and meta["tokens_per_stream"] == {"x": 12 * 8 * 32}
    assert meta["flops"]["self"] == meta["flops"]["cumulative"] == pytest.approx(fpt * 12 * 8 * 32)
    steps = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").iterdir())
    assert steps == [4, 8, 12]
    for s in steps:
        ck = out / "checkpoints" / f"step-{s}"
        assert read_meta(ck)["flops"]["cumulative"] == pytest.approx(fpt * s * 8 * 32)
        AutoModelForCausalLM.from_pretrained(ck)
        assert not (ck / "state").exists()  # a finished run keeps no optimizer states
    log = read_log(out / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 13)) and log[-1]["loss"] < log[0]["loss"]
    assert list((out / "tb").glob("events.out.tfevents.*"))
    # the same spec again is a no-op; a different spec refuses to overwrite
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert train(None, Mixture(items=[MixtureItem(shard=shard, name="x")]), spec, out, progress=False) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime
    with pytest.raises(GrowmergeError, match="different spec"):
        train(None, Mixture(items=[MixtureItem(shard=shard, name="x")]), spec.model_copy(update={"lr": 1e-3}),
              out, progress=False)


def test_cumulative_flops_through_seed_clone_adapt(tmp_path):
    code = random_shard(tmp_path / "code.bin", seed=1)
    lang = random_shard(tmp_path / "sv.bin", seed=2)
    en = random_shard(tmp_path / "en.bin", n=16, seed=3)
    seed = train("tiny", Mixture(items=[MixtureItem(shard=code)]), TrainSpec(**{**SMALL, "steps": 4}),
                 tmp_path / "seed", meta={"kind": "seed"}, progress=False)
    seed_cost = read_meta(seed)["flops"]["cumulative"]
    clone = tmp_path / "clone"  # what `growmerge clone` writes: the parent's cost, none of its own
    shutil.copytree(seed, clone, ignore=shutil.ignore_patterns("checkpoints", "tb", "*.jsonl"))
    write_meta(clone, {"kind": "clone", "parents": [str(seed)], "flops": {"self": 0.0, "cumulative": seed_cost}})
    mix = Mixture(items=[MixtureItem(shard=lang, name="sv"), MixtureItem(shard=en, epochs=0.5, name="en_replay")])
    adapt = train(clone, mix, TrainSpec(**{**SMALL, "init": None, "steps": 6, "checkpoint_every_steps": 3}),
                  tmp_path / "adapt", meta={"kind": "adapt", "setup": "1x_cloned", "languages": ["sv"]}, progress=False)
    m = read_meta(adapt)
    assert m["parents"] == [str(clone)] and m["setup"] == "1x_cloned"
    assert m["flops"]["cumulative"] == pytest.approx(seed_cost + m["flops"]["self"])
    assert m["flops"]["self"] == pytest.approx(seed_cost / 4 * 6)  # same shape and batch: cost per step equal
    assert read_meta(adapt / "checkpoints" / "step-3")["flops"]["cumulative"] == pytest.approx(seed_cost + seed_cost / 4 * 3)
    assert sum(m["tokens_per_stream"].values()) == m["tokens"] == 6 * 8 * 32
    assert set(m["tokens_per_stream"]) == {"sv", "en_replay"}


# ---------------------------------------------------------------------------------------------
# exact resume after SIGKILL (mid-checkpoint, then mid-training)
# ---------------------------------------------------------------------------------------------
def test_sigkill_mid_checkpoint_and_mid_training_then_resume_gives_the_same_run(tmp_path):
    shard = random_shard(tmp_path / "d.bin")
    reference = train(None, Mixture(items=[MixtureItem(shard=shard, name="x")]), TrainSpec(**SMALL),
                      tmp_path / "ref", progress=False)
    job = write_job(tmp_path / "job.yaml", shard, tmp_path / "m")
    work = tmp_path / "m.partial"

    r = run_cli([str(job)], env=killed_at("checkpoint:8", tmp_path))
    assert r.returncode == -9, r.stderr
    assert (work / "checkpoints" / "step-8.tmp").is_dir() and not (work / "checkpoints" / "step-8").exists()
    assert not (tmp_path / "m").exists()
    r = run_cli([str(job)])  # an unfinished run is never silently restarted
    assert r.returncode == 2 and "--resume" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli([str(job), "--resume"], env=killed_at("step:10", tmp_path))
    assert r.returncode == -9, r.stderr
    r = run_cli([str(job), "--resume"])
    assert r.returncode == 0, r.stderr
    got, want = losses(tmp_path / "m"), losses(reference)
    assert len(got) == len(want) == 12
    assert np.max(np.abs(np.array(got) - np.array(want))) <= 1e-6
    assert read_meta(tmp_path / "m")["final_loss"] == pytest.approx(read_meta(reference)["final_loss"], abs=1e-6)


def test_resume_with_a_different_spec_is_refused(tmp_path):
    shard = random_shard(tmp_path / "d.bin")
    job = write_job(tmp_path / "job.yaml", shard, tmp_path / "m")
    assert run_cli([str(job)], env=killed_at("step:5", tmp_path)).returncode == -9
    write_job(tmp_path / "job.yaml", shard, tmp_path / "m", lr=1e-3)
    r = run_cli([str(job), "--resume"])
    assert r.returncode == 2 and "fingerprint" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# torchrun: DDP and FSDP2 on gloo match one process with the same global batch
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp2"])
def test_torchrun_two_processes_match_one(tmp_path, fsdp):
    shard = random_shard(tmp_path / "d.bin")
    spec = {**SMALL, "steps": 6, "checkpoint_every_steps": 3}
    one = train(None, Mixture(items=[MixtureItem(shard=shard, name="x")]), TrainSpec(**spec), tmp_path / "one",
                progress=False)
    job = write_job(tmp_path / "job.yaml", shard, tmp_path / "two", **spec)
    flags = ["--fsdp"] if fsdp else []
    if fsdp:  # also: a sharded run killed after its first checkpoint resumes from the DCP shards
        r = run_cli([str(job)] + flags, torchrun=2, timeout=180, env=killed_at("step:5", tmp_path))
        assert r.returncode != 0 and (tmp_path / "two.partial" / "checkpoints" / "step-3" / "state").is_dir()
        flags.append("--resume")
    r = run_cli([str(job)] + flags, torchrun=2, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert np.max(np.abs(np.array(losses(tmp_path / "two")) - np.array(losses(one)))) <= 1e-5
    from safetensors.torch import load_file

    a, b = load_file(one / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys() and "lm_head.weight" not in a  # the tie survived sharding
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-4
    assert read_meta(tmp_path / "two")["flops"] == pytest.approx(read_meta(one)["flops"])


def test_batch_that_does_not_divide_over_ranks(tmp_path):
    from growmerge.train.distributed import Dist
    from growmerge.train.loop import make_plan
    from growmerge.train.stream import open_stream

    stream = open_stream(Mixture(items=[MixtureItem(shard=random_shard(tmp_path / "d.bin"))]), 0)
    config = preset_config("tiny", 96, None, None)
    with pytest.raises(GrowmergeError, match="does not divide over 2 ranks"):
        make_plan(TrainSpec(**{**SMALL, "global_batch": 7}), stream, config, Dist(0, 2))
    with pytest.raises(GrowmergeError, match="micro_batch 3 does not divide"):
        make_plan(TrainSpec(**{**SMALL, "micro_batch": 3}), stream, config, Dist(0, 2))
    assert make_plan(TrainSpec(**SMALL), stream, config, Dist(0, 2)).accum == 2


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_missing_shard_is_one_line_exit_2(tmp_path):
    job = write_job(tmp_path / "job.yaml", tmp_path / "nope.bin", tmp_path / "m")
    r = run_cli([str(job)])
    assert r.returncode == 2 and "nope.bin" in r.stderr and "shard not found" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_vocab_mismatch(tmp_path, tiny_llama):
    model = tiny_llama("m", vocab=320)
    shard = write_shard(tmp_path / "big.bin", np.zeros((16, 32)), 1000)
    with pytest.raises(GrowmergeError, match="1000-token vocabulary but the model has 320"):
        train(model, Mixture(items=[MixtureItem(shard=shard)]), TrainSpec(**{**SMALL, "init": None}),
              tmp_path / "out", progress=False)
    big_tok = tiny_llama("big", vocab=400)
    ok_shard = random_shard(tmp_path / "ok.bin", vocab=96)
    with pytest.raises(GrowmergeError, match=r"tokenizer .* has 3[2-9]\d tokens but the model's vocabulary is 320"):
        train(model, Mixture(items=[MixtureItem(shard=ok_shard)]), TrainSpec(**{**SMALL, "init": None}),
              tmp_path / "out", tokenizer_dir=big_tok, progress=False)


def test_bad_spec_values_are_one_line(tmp_path):
    from growmerge.train.job import load_job

    (tmp_path / "j.yaml").write_text("init: tiny\nsteps: 3\ntokens: 100\nmixture: []\n")
    with pytest.raises(GrowmergeError, match="either tokens or steps"):
        load_job(tmp_path / "j.yaml")
    (tmp_path / "j.yaml").write_text("init: tiny\nsteps: 3\n")
    with pytest.raises(GrowmergeError, match="add `mixture:`"):
        load_job(tmp_path / "j.yaml").mixture()
    (tmp_path / "j.yaml").write_text("init: tiny\nlearning_rate: 3\n")
    with pytest.raises(GrowmergeError, match="learning_rate"):
        load_job(tmp_path / "j.yaml")
    with pytest.raises(GrowmergeError, match="neither a model directory nor a preset"):
        train("not-a-preset", Mixture(items=[MixtureItem(shard=random_shard(tmp_path / "d.bin"))]),
              TrainSpec(**SMALL), tmp_path / "o", progress=False)


# ---------------------------------------------------------------------------------------------
# real text: the loss goes down (Python stdlib source, a BPE trained here, packed per the contract)
# ---------------------------------------------------------------------------------------------
def stdlib_documents(max_chars: int) -> list[str]:
    import sysconfig

    docs, total = [], 0
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).joinpath("json").glob("*.py")) + \
            sorted(Path(sysconfig.get_paths()["stdlib"]).joinpath("email").glob("*.py")):
        text = f.read_text(encoding="utf-8", errors="replace")
        docs.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return docs


def pack(ids: list[list[int]], eos: int, seq_len: int) -> np.ndarray:
    """Documents joined with an EOS after each, cut into full sequences (the shard contract)."""
    flat = np.concatenate([np.array(d + [eos]) for d in ids])
    n = len(flat) // seq_len
    return flat[: n * seq_len].reshape(n, seq_len)


def test_loss_goes_down_on_real_text(tmp_path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    docs = stdlib_documents(300_000)
    assert sum(map(len, docs)) >= 250_000
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(tmp_path / "tok")
    rows = pack([e.ids for e in tok.encode_batch(docs)], fast.eos_token_id, 64)
    held_out = torch.from_numpy(rows[-32:].astype(np.int64))
    shard = write_shard(tmp_path / "code.bin", rows[:-32], len(fast))
    spec = TrainSpec(init="tiny", steps=60, global_batch=16, lr=3e-3, checkpoints=3, dtype="bf16")
    out = train(None, Mixture(items=[MixtureItem(shard=shard, name="code")]), spec, tmp_path / "m",
                tokenizer_dir=tmp_path / "tok", progress=False)
    log = read_log(out / "train_log.jsonl")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.vocab_size == len(fast) and (out / "tokenizer.json").is_file()
    with torch.no_grad():
        held = model(input_ids=held_out, labels=held_out).loss.item()
    assert log[0]["loss"] > 5.5  # ~ln(512) before learning
    # Better than knowing token frequencies alone: the model uses context.
    counts = np.bincount(rows[:-32].ravel(), minlength=len(fast)) + 1.0
    unigram = float(-np.log(counts / counts.sum())[held_out[:, 1:].numpy()].mean())
    assert held < log[0]["loss"] - 1.0 and held < unigram, (log[0]["loss"], held, unigram)
    assert sorted(int(p.name[5:]) for p in (out / "checkpoints").iterdir()) == [20, 40, 60]


def test_checkpoint_cadence_by_steps_flops_and_count():
    from growmerge.train.loop import checkpoint_steps

    assert checkpoint_steps(TrainSpec(checkpoint_every_steps=30), 100, 1.0) == {30, 60, 90, 100}
    assert checkpoint_steps(TrainSpec(checkpoints=4), 10, 1.0) == {2, 5, 8, 10}
    assert checkpoint_steps(TrainSpec(checkpoint_every_flops=25.0), 10, 10.0) == {3, 5, 8, 10}
    assert len(checkpoint_steps(TrainSpec(), 1000, 1.0)) == 10  # default: 10 exports per run


def test_fused_chunked_loss_equals_cross_entropy(monkeypatch):
    import torch.nn.functional as F

    from growmerge.train import loss as loss_mod

    monkeypatch.setattr(loss_mod, "CHUNK_ELEMENTS", 64 * 100)  # many chunks, the last one partial
    torch.manual_seed(0)
    h = torch.randn(300, 16, requires_grad=True)
    w = torch.randn(100, 16, requires_grad=True)
    y = torch.randint(0, 100, (300,))
    F.cross_entropy(h @ w.T, y).mul(3).backward()
    want = F.cross_entropy(h @ w.T, y).item(), h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    got = loss_mod.fused_cross_entropy(h, w, y)
    got.mul(3).backward()
    assert abs(got.item() - want[0]) < 1e-5
    assert torch.allclose(h.grad, want[1], atol=1e-6) and torch.allclose(w.grad, want[2], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# resumable state: safetensors + JSON, a damaged state falls back, nothing is ever unpickled
# ---------------------------------------------------------------------------------------------
class Crash(Exception):
    pass


def crashed_run(tmp_path, monkeypatch, mix, at: int = 10) -> Path:
    """A run of SMALL stopped after step `at` (states at steps 4 and 8 kept); returns its work dir."""
    from growmerge.train import observe

    logged = observe.Observer.step

    def step(self, record):
        logged(self, record)
        if record["step"] == at:
            raise Crash()

    with monkeypatch.context() as patch:
        patch.setattr(observe.Observer, "step", step)
        with pytest.raises(Crash):
            train(None, mix, TrainSpec(**SMALL), tmp_path / "m", progress=False)
    return tmp_path / "m.partial"


def test_state_is_safetensors_and_json_and_a_damaged_one_falls_back(tmp_path, monkeypatch, capsys):
    mix = Mixture(items=[MixtureItem(shard=random_shard(tmp_path / "d.bin"), name="x")])
    reference = train(None, mix, TrainSpec(**SMALL), tmp_path / "ref", progress=False)
    work = crashed_run(tmp_path, monkeypatch, mix)
    state = work / "checkpoints" / "step-8" / "state"
    assert sorted(p.name for p in state.iterdir()) == ["rank-0-of-1.safetensors", "state.json", "trainer.json"]
    f = state / "rank-0-of-1.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # torn by a crash of the disk, say
    out = train(None, mix, TrainSpec(**SMALL), tmp_path / "m", resume=True, progress=False)
    assert "step-8/state is unusable" in capsys.readouterr().err
    assert np.max(np.abs(np.array(losses(out)) - np.array(losses(reference)))) <= 1e-6


def test_a_crafted_pickle_in_a_run_directory_is_never_loaded(tmp_path, monkeypatch, capsys):
    import pickle

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self):
            return open, (str(tmp_path / "pwned"), "w")

    mix = Mixture(items=[MixtureItem(shard=random_shard(tmp_path / "d.bin"), name="x")])
    work = crashed_run(tmp_path, monkeypatch, mix)
    for step in (4, 8):  # what torch.distributed.checkpoint wrote: a pickled .metadata
        state = work / "checkpoints" / f"step-{step}" / "state"
        trainer = json.loads((state / "trainer.json").read_text())
        shutil.rmtree(state)
        state.mkdir()
        (state / ".metadata").write_bytes(pickle.dumps(Payload()))
        (state / "trainer.json").write_text(json.dumps({k: trainer[k] for k in ("step", "consumed_samples",
                                                                                 "fingerprint", "rng")}))
    out = train(None, mix, TrainSpec(**SMALL), tmp_path / "m", resume=True, progress=False)
    assert not (tmp_path / "pwned").exists()
    assert "never unpickled" in capsys.readouterr().err
    assert len(losses(out)) == 12  # started afresh: nothing usable to resume from


def test_a_non_finite_loss_stops_the_run_before_the_update_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from growmerge.train import loop

    mix = Mixture(items=[MixtureItem(shard=random_shard(tmp_path / "d.bin"), name="x")])
    real, calls = loop.accumulate_gradients, []

    def poisoned(*args):
        calls.append(1)
        return float("nan") if len(calls) == 7 else real(*args)

    monkeypatch.setattr(loop, "accumulate_gradients", poisoned)
    with pytest.raises(GrowmergeError, match=r"diverged at step 7: loss nan.*step-4 is the last good checkpoint"):
        train(None, mix, TrainSpec(**SMALL), tmp_path / "m", progress=False)
    steps = sorted(p.name for p in (tmp_path / "m.partial" / "checkpoints").iterdir())
    assert steps == ["step-4"] and not (tmp_path / "m").exists()
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(tmp_path / "m.partial" / "checkpoints" / "step-4" /
                                                             "model.safetensors").values())


def test_state_moves_between_one_process_and_fsdp2(tmp_path, monkeypatch):
    """One process to two FSDP2 ranks (each takes its dim-0 chunk of the full tensors) and back (the
    ranks' shards joined): the same run as one uninterrupted process."""
    shard = random_shard(tmp_path / "d.bin")
    mix = Mixture(items=[MixtureItem(shard=shard, name="x")])
    reference = train(None, mix, TrainSpec(**SMALL), tmp_path / "ref", progress=False)
    crashed_run(tmp_path, monkeypatch, mix, at=5)  # one process: state at step 4
    job = write_job(tmp_path / "job.yaml", shard, tmp_path / "m")
    r = run_cli([str(job), "--resume", "--fsdp"], torchrun=2, timeout=180, env=killed_at("step:10", tmp_path))
    assert r.returncode != 0
    state = tmp_path / "m.partial" / "checkpoints" / "step-8" / "state"
    assert sorted(p.name for p in state.glob("*.safetensors")) == ["rank-0-of-2.safetensors", "rank-1-of-2.safetensors"]
    out = train(None, mix, TrainSpec(**SMALL), tmp_path / "m", resume=True, progress=False)
    assert np.max(np.abs(np.array(losses(out)) - np.array(losses(reference)))) <= 1e-5
