"""The plan: a study config → an ordered DAG of stages (paper §3, Fig. 1).

    data → pairs
    seed_code → seed → base_1x ──────────────┬─► 1x_<L>, 1x_multi ─────────┐
                  └─► seed_2x → base_2x ─────┼─► 2x_<L>, 2x_multi ─────────┤
                       base_1x_cloned ───────┴─► 1x_cloned_<L>, …_multi ───┤
                                                   merge_<scale> ◄─────────┤
                                                   eval_<model>, eval_matched, vectors_<scale>, report

Stages are listed in an order that respects their dependencies, so the runner walks the list.
Each stage's fingerprint hashes its own parameters and its dependencies' fingerprints: change a
setting and exactly the stages downstream of it are redone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from growmerge.study.spec import StudyConfig

ENGLISH = "en"


@dataclass
class Stage:
    id: str
    kind: str  # data | pairs | reference | train | clone | merge | eval | matched | vectors | report
    deps: list[str]
    params: dict = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def model(self) -> str | None:
        """The model this stage produces (train/clone/reference) or evaluates (eval)."""
        return self.params.get("model")


def base_of(setup: str) -> str:
    """The English base each setup starts from (and that task-vector merges subtract)."""
    return {"1x": "base_1x", "1x_cloned": "base_1x_cloned", "2x": "base_2x"}[setup]


def build_plan(cfg: StudyConfig) -> list[Stage]:
    langs = list(cfg.data.languages)
    stages: list[Stage] = [Stage("data", "data", [], {"data": cfg.data.model_dump(mode="json")}),
                           Stage("pairs", "pairs", ["data"], {"languages": langs + [ENGLISH],
                                                              "n": cfg.eval.la_pairs, "seed": cfg.seed})]

    def train(name, init, mixture, phase, kind, setup, scale, languages):
        deps = ["data"] + ([init] if any(s.id == init for s in stages) else [])
        stages.append(Stage(name, "train", deps, {
            "model": name, "init": init, "mixture": mixture, "phase": phase, "kind": kind, "setup": setup,
            "scale": scale, "languages": languages, "spec": cfg.train_spec(phase).model_dump(mode="json")}))

    def clone(name, src, scale):
        stages.append(Stage(name, "clone", [src], {"model": name, "src": src, "factor": cfg.model.factor,
                                                   "snr_db": cfg.model.snr_db, "seed": cfg.seed, "scale": scale}))

    train("seed_code", cfg.model.init, "seed_code", "seed_code", "seed", "seed", None, ["code"])
    train("seed", "seed_code", "seed_mixed", "seed_mixed", "seed", "seed", None, ["code", ENGLISH])
    train("base_1x", "seed", "base_en", "base", "base", "base_1x", "1x", [ENGLISH])
    if "2x" in cfg.setups:
        clone("seed_2x", "seed", None)
        train("base_2x", "seed_2x", "base_en", "base", "base", "base_2x", "2x", [ENGLISH])
    if "1x_cloned" in cfg.setups:
        clone("base_1x_cloned", "base_1x", "1x_cloned")

    adapted: dict[str, dict[str, str]] = {s: {} for s in cfg.setups}
    for setup in cfg.setups:
        for lang in langs:
            name = f"{setup}_{lang}"
            train(name, base_of(setup), f"adapt_{lang}", "adapt", "adapt", setup, setup, [lang])
            adapted[setup][lang] = name
        if cfg.multilingual:
            train(f"{setup}_multi", base_of(setup), "multi", "multi", "adapt", f"{setup}_multi", setup, langs)

    merged: list[str] = []
    if cfg.merge.methods and len(langs) >= 2:
        for scale in cfg.merge.scales:
            if scale not in cfg.setups:
                continue
            name = f"merge_{scale}"
            stages.append(Stage(name, "merge", [base_of(scale), *adapted[scale].values()], {
                "scale": scale, "base": base_of(scale), "models": adapted[scale],
                **cfg.merge.model_dump(mode="json", exclude={"scales"}), "seed": cfg.seed}))
            merged.append(name)

    reference = "base_2x" if "2x" in cfg.setups else "base_1x"
    for ots in cfg.eval.off_the_shelf:
        stages.append(Stage(ots.name, "reference", [], {"model": ots.name, "source": ots.source}))

    eval_deps = ["pairs", reference]
    evaluated = [s for s in stages if s.kind in ("train", "reference") and s.params.get("kind") != "seed"]
    for s in evaluated:
        all_langs = s.kind == "reference" or s.params["kind"] == "base"
        model_langs = langs if all_langs else s.params["languages"]
        max_pairs = next((o.max_pairs for o in cfg.eval.off_the_shelf if o.name == s.id), None)
        stages.append(Stage(f"eval_{s.id}", "eval", [s.id, *eval_deps], {
            "model": s.id, "languages": [*model_langs, ENGLISH], "reference": reference, "max_pairs": max_pairs,
            "eval": cfg.eval.model_dump(mode="json", exclude={"off_the_shelf"})}))
    for m in merged:
        stages.append(Stage(f"eval_{m}", "eval_merges", [m, *eval_deps], {
            "scale": m.removeprefix("merge_"), "reference": reference, "english": cfg.eval.merges_on_english,
            "eval": cfg.eval.model_dump(mode="json", exclude={"off_the_shelf"})}))

    adapt_runs = [s.id for s in stages if s.kind == "train" and s.params["kind"] == "adapt"
                  and s.params["setup"] in cfg.setups]
    if cfg.eval.checkpoints == "matched" and len(cfg.setups) > 1:
        stages.append(Stage("eval_matched", "matched", [*adapt_runs, *eval_deps], {
            "reference": reference, "eval": cfg.eval.model_dump(mode="json", exclude={"off_the_shelf"})}))
    for scale in cfg.merge.scales:
        if scale in cfg.setups and len(langs) >= 2:
            stages.append(Stage(f"vectors_{scale}", "vectors", [base_of(scale), *adapted[scale].values()],
                                {"scale": scale, "base": base_of(scale), "models": adapted[scale]}))
    stages.append(Stage("report", "report", [s.id for s in stages], {}))
    return fingerprint_plan(stages)


def fingerprint_plan(stages: list[Stage]) -> list[Stage]:
    done: dict[str, str] = {}
    for s in stages:
        missing = [d for d in s.deps if d not in done]
        if missing:  # a bug in build_plan, not a user error
            raise AssertionError(f"stage {s.id} depends on {missing} which come later or not at all")
        blob = json.dumps({"kind": s.kind, "params": s.params, "deps": [done[d] for d in s.deps]},
                          sort_keys=True, default=str)
        s.fingerprint = done[s.id] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return stages


def estimate(cfg: StudyConfig, stages: list[Stage]) -> dict[str, tuple[int | None, float | None]]:
    """Tokens and FLOPs each training stage will see, as far as they are known before running.

    A budget in tokens or steps is exact; 'one pass over the mixture' needs the data manifest."""
    from growmerge.grow.hyperclone import grown_config
    from growmerge.train.flops import flops_per_token
    from growmerge.train.spec import PRESETS, preset_config

    vocab = cfg.data.tokenizer.vocab_size
    passes = pass_tokens(cfg)
    small = None
    if cfg.model.init in PRESETS:
        small = preset_config(cfg.model.init, vocab, None, None)
    out: dict[str, tuple[int | None, float | None]] = {}
    for s in stages:
        if s.kind != "train":
            continue
        spec = cfg.train_spec(s.params["phase"])
        seq = spec.seq_len or cfg.data.seq_len
        tokens = spec.tokens or (spec.steps * spec.global_batch * seq if spec.steps else None)
        if tokens is None:
            tokens = passes.get(s.params["mixture"])
        big = s.params["scale"] in ("2x", "1x_cloned") or s.id == "base_2x"
        config = None if small is None else (grown_config(small, cfg.model.factor, True) if big else small)
        flops = flops_per_token(config, seq) * tokens if (config is not None and tokens) else None
        out[s.id] = (tokens, flops)
    return out


def pass_tokens(cfg: StudyConfig) -> dict[str, int]:
    """Training tokens of one pass over each mixture, once the data stage has run (else empty)."""
    from growmerge.data.mixture import build_mixtures
    from growmerge.data.shards import read_shard_meta

    if not (cfg.root / "data" / "manifest.json").is_file():
        return {}
    mixtures = build_mixtures(cfg.root, cfg.data)
    return {name: sum(int(read_shard_meta(i.shard)["tokens"] * i.epochs) for i in mix.items)
            for name, mix in mixtures.items()}
