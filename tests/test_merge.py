"""Merging: mergekit 0.1.5 bit for bit in compat mode, the fast default mode near it, bad inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from conftest import make_tiny_llama

PAPER_METHODS = ["linear", "task_arithmetic", "ties", "dare_ties", "multislerp"]
LANGS = ["isl", "fao", "swe", "ekk"]


def finetuned(path: Path, base: Path, seed: int, scale: float = 0.05) -> Path:
    """A "language model": the base plus a small random direction (like a fine-tune's task vector)."""
    other = make_tiny_llama(path, seed=seed)
    b, o = load_file(base / "model.safetensors"), load_file(other / "model.safetensors")
    save_file({k: b[k] + scale * (o[k] - b[k]) for k in b}, other / "model.safetensors", metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict[str, Path]:
    """An English base and four language models fine-tuned from it (tiny Llama, GQA, tied)."""
    root = tmp_path_factory.mktemp("zoo")
    base = make_tiny_llama(root / "eng", seed=0)
    models = {"eng": base}
    for i, lang in enumerate(LANGS):
        models[lang] = finetuned(root / lang, base, seed=i + 1)
    # One tensor two languages left untouched: MultiSlerp divides its zero task vectors by
    # (0 + eps), and eps rounds to 0 in float16, so mergekit writes NaN there (compat must
    # reproduce that, the default mode must not).
    b = load_file(base / "model.safetensors")
    for lang in ("isl", "fao"):
        t = load_file(models[lang] / "model.safetensors")
        t["model.norm.weight"] = b["model.norm.weight"].clone()
        save_file(t, models[lang] / "model.safetensors", metadata={"format": "pt"})
    return models


def paper_yaml(path: Path, method: str, models: list[Path], base: Path | None, **extra) -> Path:
    params = {"weight": 1.0}
    if method in ("ties", "dare_ties"):
        params["density"] = 0.5
    cfg = {
        "merge_method": method,
        "models": [{"model": str(m), "parameters": dict(params)} for m in models],
        "parameters": {"normalize": True, "int8_mask": True},
        "dtype": "float16",
    }
    if base is not None and method != "linear":
        cfg["base_model"] = str(base)
    cfg.update(extra)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_mergekit(config: Path, out: Path, seed: int = 0) -> Path:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    cfg = MergeConfiguration.model_validate(yaml.safe_load(config.read_text()))
    run_merge(cfg, str(out), MergeOptions(random_seed=seed, quiet=True, write_model_card=False))
    return out


def cli(*args: str):
    from growmerge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def bits(t: torch.Tensor) -> torch.Tensor:
    """Integer view of the raw bits, so NaN equals NaN and -0.0 differs from 0.0."""
    return t.contiguous().view({1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert torch.equal(bits(a[name]), bits(b[name])), f"{name} differs"


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("method", PAPER_METHODS)
def test_compat_is_bitwise_mergekit(zoo, tmp_path, method, n):
    config = paper_yaml(tmp_path / "m.yaml", method, [zoo[lang] for lang in LANGS[:n]], zoo["eng"])
    ours = cli("merge", config, tmp_path / "ours", "--mergekit-compat", "--seed", 7)
    assert ours.exit_code == 0, ours.output
    theirs = tensors(run_mergekit(config, tmp_path / "mk", seed=7))
    mine = tensors(tmp_path / "ours")
    assert "lm_head.weight" not in mine and len(mine) == 2 * 9 + 2
    assert_bitwise_equal(theirs, mine)
    if method == "multislerp" and n == 2:  # the NaN case is really exercised
        assert torch.isnan(mine["model.norm.weight"]).all()


# Default mode vs compat: float32 arithmetic instead of float16 moves an output by about one
# float16 ulp (tolerance: 2 ulp, i.e. |diff| <= 2^-9 |x| + 2^-14). TIES: magnitudes at the
# threshold may be chosen differently (float32 vs float16 deltas, index-order vs sort-order ties),
# so only >= 99% of all elements are held to that bound.
def within_ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.float(), b.float()
    return (a - b).abs() <= b.abs() * 2**-9 + 2**-14


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_default_mode_agrees_with_compat(zoo, tmp_path, method):
    config = paper_yaml(tmp_path / "m.yaml", method, [zoo[lang] for lang in LANGS[:3]], zoo["eng"])
    assert cli("merge", config, tmp_path / "compat", "--mergekit-compat").exit_code == 0
    assert cli("merge", config, tmp_path / "fast").exit_code == 0
    compat, fast = tensors(tmp_path / "compat"), tensors(tmp_path / "fast")
    base = tensors(zoo["eng"])
    agree = total = size_compat = size_fast = 0
    for name, c in compat.items():
        f = fast[name]
        assert f.dtype == torch.float16 and torch.isfinite(f).all(), name
        if method == "dare_ties":
            # Different (faster) random masks: compare what DARE preserves -- the L1 size of the
            # merged task vector over the model -- not elements.
            size_compat += float((c.float() - base[name].half().float()).abs().sum())
            size_fast += float((f.float() - base[name].half().float()).abs().sum())
            continue
        ok = within_ulps(f, c) | torch.isnan(c)
        agree, total = agree + int(ok.sum()), total + ok.numel()
        if method != "ties":
            assert ok.all(), name
    assert agree >= 0.99 * total, agree / total
    assert abs(size_fast - size_compat) <= 0.03 * size_compat


def test_output_loads_with_transformers_and_records_lineage(zoo, tmp_path):
    from transformers import AutoModelForCausalLM

    from growmerge.artifacts import write_meta

    for i, lang in enumerate(LANGS[:2]):
        write_meta(zoo[lang], {"kind": "adapt", "languages": [lang], "flops": {"self": 1.0, "cumulative": 10.0 + i}})
    try:
        config = paper_yaml(tmp_path / "m.yaml", "ties", [zoo["isl"], zoo["fao"]], zoo["eng"])
        assert cli("merge", config, tmp_path / "out").exit_code == 0
    finally:
        for lang in LANGS[:2]:
            (zoo[lang] / "growmerge.json").unlink()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    meta = json.loads((tmp_path / "out" / "growmerge.json").read_text())
    assert meta["kind"] == "merge" and meta["method"] == "ties" and meta["seed"] == 0
    assert meta["flops"]["cumulative"] == 21.0 and meta["languages"] == ["fao", "isl"]
    assert meta["inputs"] == [str(zoo["isl"]), str(zoo["fao"])] and meta["base"] == str(zoo["eng"])
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "float16"


def _bad(tmp_path, zoo, kind) -> Path:
    """Configs (and models) that must be refused, keyed by what is wrong."""
    models, base = [zoo["isl"], zoo["fao"]], zoo["eng"]
    if kind == "names":
        odd = tmp_path / "odd"
        shutil.copytree(zoo["fao"], odd)
        t = load_file(odd / "model.safetensors")
        t["model.extra.weight"] = torch.zeros(3)
        save_file(t, odd / "model.safetensors", metadata={"format": "pt"})
        models = [zoo["isl"], odd]
    if kind == "shapes":
        models = [zoo["isl"], make_tiny_llama(tmp_path / "wide", hidden=96, seed=9)]
    extra = {
        "no_base": {"base_model": None},
        "dtype": {"dtype": "float8"},
        "duplicates": {"models": [{"model": str(zoo["isl"]), "parameters": {"weight": 1.0}}] * 2},
        "zero_weights": {"models": [{"model": str(m), "parameters": {"weight": w}} for m, w in zip(models, (1, -1))]},
        "density_zero": {"models": [{"model": str(m), "parameters": {"weight": 1, "density": 0.0}} for m in models]},
        "density_big": {"models": [{"model": str(m), "parameters": {"weight": 1, "density": 1.5}} for m in models]},
    }.get(kind, {})
    cfg = paper_yaml(tmp_path / f"{kind}.yaml", "ties", models, base)
    data = yaml.safe_load(cfg.read_text())
    data.update(extra)
    data = {k: v for k, v in data.items() if v is not None}
    cfg.write_text(yaml.safe_dump(data))
    return cfg


@pytest.mark.parametrize("kind, needle", [
    ("names", "model.extra.weight"), ("shapes", "model.embed_tokens.weight"), ("no_base", "base_model"),
    ("dtype", "float8"), ("duplicates", "twice"), ("zero_weights", "sum to 0"),
    ("density_zero", "density"), ("density_big", "density"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(zoo, tmp_path, kind, needle):
    cfg = _bad(tmp_path, zoo, kind)
    out = tmp_path / "out"
    # The real console script: GrowmergeError -> one stderr line and exit 2 happens in cli.main.
    growmerge = Path(sys.executable).parent / "growmerge"
    proc = subprocess.run([str(growmerge), "merge", str(cfg), str(out)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))


def test_ignored_parameter_warns(zoo, tmp_path):
    cfg = paper_yaml(tmp_path / "ta.yaml", "task_arithmetic", [zoo["isl"], zoo["fao"]], zoo["eng"])
    data = yaml.safe_load(cfg.read_text())
    for m in data["models"]:
        m["parameters"]["density"] = 0.5
    cfg.write_text(yaml.safe_dump(data))
    result = cli("merge", cfg, tmp_path / "out")
    assert result.exit_code == 0
    assert "'density' has no effect" in result.output
    meta = json.loads((tmp_path / "out" / "growmerge.json").read_text())
    assert any("density" in w for w in meta["warnings"])


def test_merge_grid_all_subsets_all_methods_in_one_call(zoo, tmp_path):
    from growmerge.merge.config import parse_spec
    from growmerge.merge.engine import merge
    from growmerge.merge.grid import grid_spec

    args = [f"{lang}={zoo[lang]}" for lang in LANGS]
    result = cli("merge-grid", *args, "--base", zoo["eng"], "--out", tmp_path / "grid")
    assert result.exit_code == 0, result.output
    outs = sorted(p.relative_to(tmp_path / "grid") for p in (tmp_path / "grid").glob("*/*"))
    assert len(outs) == 11 * 5
    assert {p.parts[0] for p in outs} == set(PAPER_METHODS)
    assert Path("ties/ekk+fao+isl+swe") in outs and Path("linear/fao+isl") in outs
    # A grid cell is exactly the single merge of the same config (DARE masks too).
    params = {"dtype": "float16", "density": 0.5, "normalize": True, "int8_mask": True, "seed": 0, "weight": 1.0}
    for method, combo in (("dare_ties", ["fao", "swe"]), ("ties", ["ekk", "isl", "swe"])):
        spec = parse_spec(grid_spec(method, [zoo[c] for c in combo], zoo["eng"], params))
        merge(spec, tmp_path / f"single-{method}")
        assert_bitwise_equal(tensors(tmp_path / f"single-{method}"),
                             tensors(tmp_path / "grid" / method / "+".join(sorted(combo))))
    # Existing outputs are skipped.
    stamp = (tmp_path / "grid" / "ties" / "fao+isl" / "model.safetensors").stat().st_mtime_ns
    assert cli("merge-grid", *args, "--base", zoo["eng"], "--out", tmp_path / "grid").exit_code == 0
    assert (tmp_path / "grid" / "ties" / "fao+isl" / "model.safetensors").stat().st_mtime_ns == stamp


def test_sharded_inputs_and_outputs(zoo, tmp_path):
    from transformers import AutoModelForCausalLM

    from growmerge.merge.tensorio import ModelTensors, ShardWriter, merged_layout

    sharded = tmp_path / "isl-sharded"
    AutoModelForCausalLM.from_pretrained(zoo["isl"]).save_pretrained(sharded, max_shard_size="100KB")
    assert (sharded / "model.safetensors.index.json").is_file()
    shutil.copy(zoo["isl"] / "tokenizer.json", sharded)
    a = paper_yaml(tmp_path / "a.yaml", "linear", [zoo["isl"], zoo["fao"]], None)
    b = paper_yaml(tmp_path / "b.yaml", "linear", [sharded, zoo["fao"]], None)
    assert cli("merge", a, tmp_path / "a").exit_code == 0
    assert cli("merge", b, tmp_path / "b").exit_code == 0
    assert_bitwise_equal(tensors(tmp_path / "a"), tensors(tmp_path / "b"))
    # The streaming writer splits into shards with an index that from_pretrained follows.
    reader = ModelTensors(tmp_path / "a")
    layout = merged_layout([reader])
    out = tmp_path / "resharded"
    shutil.copytree(tmp_path / "a", out)
    (out / "model.safetensors").unlink()
    writer = ShardWriter(out, layout, max_shard_bytes=40_000)
    for name in layout:
        writer.write(name, reader.get(name))
    writer.finish()
    assert len(writer.files) > 2
    m1 = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    m2 = AutoModelForCausalLM.from_pretrained(out)
    for (n1, p1), (n2, p2) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_vector_similarity_geometry(zoo, tmp_path):
    from growmerge.merge.vectors import module_type, vector_similarity, write_heatmap

    base = tensors(zoo["eng"])
    delta = {k: tensors(zoo["isl"])[k] - v for k, v in base.items()}

    def shifted(name: str, scale: float) -> Path:
        d = shutil.copytree(zoo["eng"], tmp_path / name)
        save_file({k: v + scale * delta[k] for k, v in base.items()}, d / "model.safetensors",
                  metadata={"format": "pt"})
        return d

    res = vector_similarity(zoo["eng"], {"a": shifted("a", 1.0), "b": shifted("b", 2.0), "c": shifted("c", -1.0),
                                         "fao": zoo["fao"]})
    cos, norm = res["overall"]["cosine"], res["overall"]["norm"]
    assert cos[0][1] == pytest.approx(1, abs=1e-5) and cos[0][2] == pytest.approx(-1, abs=1e-5)
    assert norm[1] == pytest.approx(2 * norm[0], rel=1e-5)
    # isl and fao are base + 0.05 (random init - base): independent inits share -base, so cos ~ 1/2.
    assert cos[0][3] == pytest.approx(0.5, abs=0.1)
    assert "self_attn.q_proj" in res["by_module"] and "0" in res["by_layer"]
    assert module_type("model.layers.12.mlp.up_proj.weight") == "mlp.up_proj"
    png = write_heatmap(res, tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = cli("analyze", "vectors", "--base", zoo["eng"], f"a={tmp_path / 'a'}", f"fao={zoo['fao']}",
                 "--png", tmp_path / "cli.png")
    assert result.exit_code == 0 and (tmp_path / "cli.png").is_file()


@pytest.mark.parametrize("method", ["dare_linear", "slerp"])
def test_beyond_paper_methods_match_mergekit(zoo, tmp_path, method):
    models = [zoo["isl"]] if method == "slerp" else [zoo["isl"], zoo["fao"]]
    extra = {"parameters": {"t": 0.3}} if method == "slerp" else {}
    config = paper_yaml(tmp_path / "m.yaml", method, models, zoo["eng"], **extra)
    if method == "dare_linear":
        data = yaml.safe_load(config.read_text())
        for m in data["models"]:
            m["parameters"]["density"] = 0.5
        config.write_text(yaml.safe_dump(data))
    assert cli("merge", config, tmp_path / "ours", "--mergekit-compat").exit_code == 0
    assert cli("merge", config, tmp_path / "fast").exit_code == 0
    theirs = tensors(run_mergekit(config, tmp_path / "mk"))
    assert_bitwise_equal(theirs, tensors(tmp_path / "ours"))
    fast = tensors(tmp_path / "fast")
    assert all(torch.isfinite(t).all() for t in fast.values())
    if method == "slerp":
        assert all(within_ulps(fast[k], theirs[k]).all() for k in theirs)


def test_default_mode_does_not_depend_on_chunking(zoo, tmp_path, monkeypatch):
    """The fast mode (and compat's combination step) works in chunks of 2^20 elements: tiny models
    fit in one, so re-run with 1000-element chunks to exercise chunk boundaries (TIES ties carried
    over, DARE streams)."""
    from growmerge.merge import fast
    from growmerge.merge.config import read_mergekit_yaml
    from growmerge.merge.engine import merge

    models = [zoo[lang] for lang in LANGS[:3]]
    for method in PAPER_METHODS:
        config = paper_yaml(tmp_path / f"{method}.yaml", method, models, zoo["eng"])
        merge(read_mergekit_yaml(config), tmp_path / f"{method}-big")
        monkeypatch.setattr(fast, "CHUNK", 1000)
        merge(read_mergekit_yaml(config), tmp_path / f"{method}-small")
        monkeypatch.undo()
        big, small = tensors(tmp_path / f"{method}-big"), tensors(tmp_path / f"{method}-small")
        if method in ("multislerp", "dare_ties"):
            # Sums over chunks (MultiSlerp's Gram matrix, DARE's L1 norms) round differently per
            # chunking: rounding only. DARE's masks are the same draws in any chunking -- a
            # different mask would move elements by a whole task-vector entry, far beyond this.
            assert all(within_ulps(small[k], big[k]).all() for k in big)
        else:
            assert_bitwise_equal(big, small)
        if method in ("task_arithmetic", "ties", "dare_ties"):  # compat chunks its combination step
            merge(read_mergekit_yaml(config), tmp_path / f"{method}-compat-big", compat=True)
            monkeypatch.setattr(fast, "CHUNK", 1000)
            merge(read_mergekit_yaml(config), tmp_path / f"{method}-compat-small", compat=True)
            monkeypatch.undo()
            assert_bitwise_equal(tensors(tmp_path / f"{method}-compat-big"),
                                 tensors(tmp_path / f"{method}-compat-small"))


def test_failed_write_leaves_nothing(zoo, tmp_path, monkeypatch):
    """Output tensors are written on a background thread: a write that fails mid-merge (a full
    disk, say) must still stop the merge with that error and leave no output or temp directory."""
    from growmerge.merge import tensorio
    from growmerge.merge.config import read_mergekit_yaml
    from growmerge.merge.engine import merge

    real_write, calls = tensorio.ShardWriter.write, []

    def failing_write(self, name, tensor):
        calls.append(name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_write(self, name, tensor)

    monkeypatch.setattr(tensorio.ShardWriter, "write", failing_write)
    config = paper_yaml(tmp_path / "ties.yaml", "ties", [zoo["isl"], zoo["fao"]], zoo["eng"])
    with pytest.raises(OSError, match="No space left"):
        merge(read_mergekit_yaml(config), tmp_path / "out")
    assert len(calls) == 3  # nothing is written after the failure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ties.yaml"]


def test_inputs_without_a_lease_are_copied_and_merge_the_same(zoo, tmp_path):
    """A merge run from a worker thread cannot install the lease's signal handler: its inputs are read
    as copies instead of memory maps, with the same bits."""
    import threading

    from growmerge.merge.config import read_mergekit_yaml
    from growmerge.merge.engine import merge

    config = paper_yaml(tmp_path / "ties.yaml", "ties", [zoo["isl"], zoo["fao"]], zoo["eng"])
    merge(read_mergekit_yaml(config), tmp_path / "mapped")
    worker = threading.Thread(target=merge, args=(read_mergekit_yaml(config), tmp_path / "copied"))
    worker.start()
    worker.join()
    assert_bitwise_equal(tensors(tmp_path / "mapped"), tensors(tmp_path / "copied"))


def test_merge_grid_redoes_exactly_the_cells_whose_inputs_or_parameters_changed(zoo, tmp_path):
    args = [f"{lang}={zoo[lang]}" for lang in ("isl", "fao")]
    grid = tmp_path / "grid"
    assert cli("merge-grid", *args, "--base", zoo["eng"], "--out", grid, "--methods", "linear,ties").exit_code == 0
    stamps = {m: (grid / m / "fao+isl" / "model.safetensors").stat().st_mtime_ns for m in ("linear", "ties")}
    result = cli("merge-grid", *args, "--base", zoo["eng"], "--out", grid, "--methods", "linear,ties",
                 "--density", "0.3")
    assert result.exit_code == 0, result.output
    after = {m: (grid / m / "fao+isl" / "model.safetensors").stat().st_mtime_ns for m in ("linear", "ties")}
    assert after["linear"] == stamps["linear"] and after["ties"] != stamps["ties"]
