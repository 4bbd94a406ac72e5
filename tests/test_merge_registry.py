"""The merge-method registry: one declaration per method drives the YAML checks, merge-grid and
the CLI; a new method is one file (tests/toy_merge_method.py) and runs through both commands."""

from __future__ import annotations

import importlib
import math
import sys
import types
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import make_tiny_llama
from growmerge.errors import GrowmergeError
from growmerge.merge.registry import METHODS, Method, Param, method_names, register, unregister

GAIN, WEIGHTS = 0.75, (1.0, 0.5)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("registry")
    return {name: make_tiny_llama(root / name, seed=i, hidden=32, intermediate=64, with_tokenizer=False)
            for i, name in enumerate(("eng", "isl", "fao"))}


@pytest.fixture
def toy():
    """Import the one-file toy method (it registers itself); forget it afterwards."""
    sys.modules.pop("toy_merge_method", None)
    module = importlib.import_module("toy_merge_method")
    yield module.TOY
    unregister("toy_max")
    sys.modules.pop("toy_merge_method", None)


def cli(*args):
    from growmerge.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def tensors(d: Path) -> dict[str, torch.Tensor]:
    return load_file(d / "model.safetensors")


def write_yaml(path: Path, method: str, models: dict, per_model: list[dict], shared: dict, base=True) -> Path:
    cfg = {"merge_method": method, "dtype": "float16", "parameters": shared,
           "models": [{"model": str(models[n]), "parameters": p} for n, p in zip(("isl", "fao"), per_model)]}
    if base:
        cfg["base_model"] = str(models["eng"])
    path.write_text(yaml.safe_dump(cfg))
    return path


def toy_expected(models, weights, gain, compat: bool) -> dict[str, torch.Tensor]:
    """The toy formula, in the order of operations each mode promises: compat in float16 as the
    inputs arrive; default mode on float16-rounded inputs widened to float32, cast back at the end."""
    base, xs = tensors(models["eng"]), [tensors(models[n]) for n in ("isl", "fao")]
    work = torch.float16 if compat else torch.float32
    out = {}
    for name, b in base.items():
        b = b.half().to(work)
        top = torch.stack([(x[name].half().to(work) - b) * w for x, w in zip(xs, weights)]).amax(dim=0)
        out[name] = (b + gain * top).half()
    return out


@pytest.mark.parametrize("compat", [False, True])
def test_toy_method_through_merge_cli(models, tmp_path, toy, compat):
    cfg = write_yaml(tmp_path / "toy.yaml", "toy_max", models, [{"weight": w} for w in WEIGHTS], {"gain": GAIN})
    result = cli("merge", cfg, tmp_path / "out", *(["--mergekit-compat"] if compat else []))
    assert result.exit_code == 0, result.output
    got, want = tensors(tmp_path / "out"), toy_expected(models, WEIGHTS, GAIN, compat)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == torch.float16 and torch.equal(got[name], want[name]), name
    # The formula really moved the weights: neither the base nor a plain mean of the models.
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(got[name], tensors(models["eng"])[name].half())


def test_toy_method_through_merge_grid_cli(models, tmp_path, toy):
    result = cli("merge-grid", f"isl={models['isl']}", f"fao={models['fao']}", "--base", models["eng"],
                 "--out", tmp_path / "grid", "--methods", "toy_max,linear", "--param", f"gain={GAIN}")
    assert result.exit_code == 0, result.output
    got, want = tensors(tmp_path / "grid" / "toy_max" / "fao+isl"), toy_expected(models, (1.0, 1.0), GAIN, False)
    assert sorted(got) == sorted(want) and all(torch.equal(got[n], want[n]) for n in want)
    # gain only reaches the method that declares it: linear is the plain mean.
    lin = tensors(tmp_path / "grid" / "linear" / "fao+isl")
    isl, fao = tensors(models["isl"]), tensors(models["fao"])
    name = "model.norm.weight"
    assert torch.equal(lin[name], ((isl[name].half().float() + fao[name].half().float()) / 2).half())


def test_help_lists_registered_methods_and_parameters(toy):
    result = cli("merge-grid", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert "toy_max (weight, gain)" in text and "slerp (t)" in text and "gain" in text
    assert "toy_max" in method_names() and METHODS["toy_max"] is toy


def test_method_names_in_declaration_order():
    names = method_names()
    assert {"linear", "task_arithmetic", "ties", "dare_ties", "dare_linear", "slerp", "multislerp"} <= set(names)
    assert names.index("task_arithmetic") < names.index("ties") < names.index("dare_ties")


def spec(method: str, per_model: list[dict], shared: dict, base: bool = True):
    from growmerge.merge.config import MergeSpec

    data = {"merge_method": method, "models": [{"model": f"m{i}", "parameters": p} for i, p in enumerate(per_model)],
            "parameters": shared}
    if base:
        data["base_model"] = "b"
    return MergeSpec.model_validate(data)


@pytest.mark.parametrize("method, per_model, shared, needle", [
    ("tie", [{"weight": 1}], {}, "unknown merge method 'tie'; use one of linear"),
    ("ties", [{"weight": 1, "densty": 0.5}], {}, "unknown parameter 'densty'; ties takes weight, density,"),
    ("ties", [{"weight": math.nan}], {}, "parameter weight=nan is outside (-inf, inf)"),
    ("linear", [{"weight": 1}, {"weight": math.inf}], {}, "model m1: parameter weight=inf"),
    ("dare_linear", [{"weight": 1, "density": 0.0}], {}, "density=0.0 is outside (0, 1]"),
    ("ties", [{"weight": 1}], {"density": 1.5}, "density=1.5 is outside (0, 1]"),
    ("multislerp", [{"weight": 1}], {"eps": 0}, "eps=0 is outside (0, inf)"),
    ("ties", [{"weight": 1}], {"normalize": 0.5}, "normalize=0.5 must be true or false"),
    ("ties", [{"weight": True}], {}, "weight=True must be a number"),
    ("slerp", [{}], {}, "needs parameters.t"),
    ("ties", [{}], {}, "model m0 needs parameters.weight"),
])
def test_bad_parameters_name_the_parameter(method, per_model, shared, needle):
    with pytest.raises(GrowmergeError) as err:
        spec(method, per_model, shared, base=method != "linear").check()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_other_methods_parameters_only_warn():
    warnings = spec("multislerp", [{"weight": 1, "density": 0.5}], {"normalize": True, "int8_mask": True}).check()
    assert any("'density' is ignored" in w for w in warnings)
    assert any("'normalize' is ignored" in w for w in warnings)


def test_grid_rejects_unknown_parameter_and_method(tmp_path):
    from growmerge.merge.grid import merge_grid

    with pytest.raises(GrowmergeError, match=r"unknown merge-grid parameter 'densty'; use one of density, eps"):
        merge_grid({"a": tmp_path, "b": tmp_path}, None, ["ties"], None, tmp_path / "o", {"densty": 0.5})
    with pytest.raises(GrowmergeError, match=r"unknown merge method 'tiez'; use one of .*multislerp"):
        merge_grid({"a": tmp_path, "b": tmp_path}, None, ["tiez"], None, tmp_path / "o", {})
    result = cli("merge-grid", "a=x", "b=y", "--out", tmp_path / "o", "--param", "density=lots")
    assert isinstance(result.exception, GrowmergeError) and "density=lots: expected a number" in str(result.exception)


def test_register_refuses_a_second_method_of_the_same_name():
    dup = Method("ties", params=(Param("weight", per_model=True),), compat=None, fast=None)
    with pytest.raises(GrowmergeError, match="already registered"):
        register(dup)
    with pytest.raises(GrowmergeError, match="declares a parameter twice"):
        register(Method("twice", params=(Param("a"), Param("a")), compat=None, fast=None))
    assert "twice" not in METHODS


@pytest.mark.parametrize("method", ["linear", "ties", "dare_ties", "multislerp", "slerp"])
def test_device_path_on_cpu_is_bitwise_the_cpu_path(models, tmp_path, monkeypatch, method):
    """`--device auto` resolves through growmerge.device.pick_device (faked here: this machine may
    have no GPU, and that module may not exist yet) and sends every chunk through the device code
    (moves, device scratch buffers, CPU masks): with the CPU as the device the bits must not move."""
    from growmerge.merge import engine

    calls = []
    fake = types.ModuleType("growmerge.device")
    fake.pick_device = lambda spec: calls.append(spec) or torch.device("cpu")
    monkeypatch.setitem(sys.modules, "growmerge.device", fake)
    real = engine.compute_device

    def cpu_as_device(spec: str, compat: bool):
        real(spec, compat)  # resolves through pick_device, and maps the CPU to the plain path ...
        return None if spec == "cpu" else torch.device("cpu")  # ... which is forced off here

    monkeypatch.setattr(engine, "compute_device", cpu_as_device)
    per_model = [{"weight": 1.0, "density": 0.5}] * (1 if method == "slerp" else 2)
    shared = {"t": 0.3} if method == "slerp" else {"normalize": True}
    cfg = write_yaml(tmp_path / "m.yaml", method, models, per_model, shared, base=method != "linear")
    assert cli("merge", cfg, tmp_path / "cpu").exit_code == 0
    result = cli("merge", cfg, tmp_path / "dev", "--device", "auto")
    assert result.exit_code == 0, result.output
    assert calls == ["auto"]
    a, b = tensors(tmp_path / "cpu"), tensors(tmp_path / "dev")
    assert all(torch.equal(a[k].view(torch.int16), b[k].view(torch.int16)) for k in a)
