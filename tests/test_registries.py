"""A new merge method and a new evaluation task, each declared in one file, run through a micro study
(plan, merge-grid stage, evaluation, ledger, report) without touching growmerge itself."""

from __future__ import annotations

import sys

import pytest
import torch
from safetensors.torch import load_file

from growmerge.ledger import Results
from growmerge.study import runner
from growmerge.study.spec import StudyConfig
from test_study import micro_config

GAIN = 0.5


@pytest.fixture
def plugins():
    yield ["toy_merge_method", "toy_eval_task"]
    from growmerge.evaluate.tasks import TASKS
    from growmerge.merge.registry import unregister

    unregister("toy_max")
    TASKS.pop("toy_nll", None)
    for module in ("toy_merge_method", "toy_eval_task"):
        sys.modules.pop(module, None)


def test_toy_method_and_toy_task_in_a_micro_study(tmp_path, plugins):
    raw = micro_config(tmp_path / "run")
    raw.update(plugins=plugins, scales=["1x"], multilingual=False)
    raw["merge"] = {"methods": ["toy_max", "linear"], "parameters": {"gain": GAIN}}
    raw["eval"] = {"tasks": {"la": {"pairs": 10}, "toy_nll": {"sentences": 4}}, "off_the_shelf": []}
    cfg = StudyConfig.model_validate(raw)
    runner.run_study(cfg, echo=lambda m: None)

    root = cfg.root
    with Results(root) as res:
        assert {m["method"] for m in res.merges()} == {"toy_max", "linear"}
        rows = res.query("SELECT model, lang, value, n FROM scores WHERE task = 'toy_nll' AND metric = 'nll'")
        tasks = {r["task"] for r in res.query("SELECT DISTINCT task FROM scores")}
    assert tasks == {"la", "toy_nll"}
    scored = {(r["model"], r["lang"]): r for r in rows}
    assert {("1x_is", "is"), ("base_1x", "fa"), ("merge/1x/toy_max/fa+is", "is")} <= set(scored)

    # The ledger holds what the task's own formula gives on that model.
    from growmerge.evaluate.scorer import Scorer

    texts = [line for line in (root / "data" / "eval" / "sentences" / "is.txt").read_text().splitlines()
             if line.strip()][:4]
    nll = Scorer.from_dir(root / "models" / "1x_is").sequence_nll(texts)
    assert scored[("1x_is", "is")]["value"] == pytest.approx(sum(nll) / sum(map(len, texts)), rel=1e-5)
    assert scored[("1x_is", "is")]["n"] == 4

    # The merge is the toy formula: base + gain * max_i(model_i - base), on float16-rounded inputs.
    def tensors(name):
        return load_file(str(root / "models" / name / "model.safetensors"))

    base, xs = tensors("base_1x"), [tensors("1x_fa"), tensors("1x_is")]
    merged = load_file(str(root / "merges" / "1x" / "toy_max" / "fa+is" / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    b = base[name].half().float()
    want = b + GAIN * torch.stack([x[name].half().float() - b for x in xs]).amax(dim=0)
    assert torch.equal(merged[name], want.half())

    # The report iterates over the registry: the toy task has its figure panel and no crash.
    html = (root / "report" / "index.html").read_text()
    assert 'id="findings"' in html
