"""The plan: a study config → an ordered DAG of typed stages (paper §3, Fig. 1).

    data → pairs
    seed_code → seed → base_1x ──────────────┬─► 1x_<L>, 1x_multi ─────────┐
                  └─► seed_2x → base_2x ─────┼─► 2x_<L>, 2x_multi ─────────┤
                       base_1x_cloned ───────┴─► 1x_cloned_<L>, …_multi ───┤
    opt-in:            base_1x_deep (base_1x deepened) ─► 1x_deep_<L>, …_multi ─┤
                       scratch_init (random init) ──────► scratch_<L>, …_multi ─┤
                                                   merge_<scale> ◄─────────┤
                                                   eval_<model>, eval_matched, vectors_<scale>, report

With ``seeds: [a, b, …]`` every training stage and everything downstream of it (clones, merges, their
evaluation, matched checkpoints, vectors, similarity) is repeated per seed, the ids of seeds after the
first carrying ``_s<seed>`` (``1x_is_s1``, ``merge_1x_s1``); data, pairs, references and the control are
shared. Stages are listed in an order that respects their dependencies, so a runner may walk the list.
Each stage's fingerprint hashes its own fields and its parents' fingerprints.
"""

from __future__ import annotations

from growmerge.errors import GrowmergeError
from growmerge.names import CODE, DEPTH_SCALE, ENGLISH, SCRATCH_SCALE, base_of
from growmerge.study.spec import StudyConfig
from growmerge.study.stages import (CloneStage, ControlStage, DataStage, DeepenStage, EvalMergesStage, EvalStage,
                                    InitStage, MatchedStage, MergeStage, PairsStage, ReferenceStage, ReportStage,
                                    SimilarityStage, Stage, TrainStage, VectorsStage, fingerprint)


def build_plan(cfg: StudyConfig) -> list[Stage]:
    langs = list(cfg.data.languages)
    tasks = cfg.eval.tasks
    epochs = cfg.phase_epochs()  # per-language epochs of adapt / multi
    stages: list[Stage] = [DataStage(id="data", data=cfg.data, epochs=epochs),
                           PairsStage(id="pairs", deps=["data"], languages=langs + [ENGLISH], tasks=tasks, seed=cfg.seed)]

    def train(name, init, mixture, phase, role, group, scale, languages, seed):
        deps = ["data"] + ([init] if any(s.id == init for s in stages) else [])
        spec = cfg.train_spec(phase)
        stages.append(TrainStage(id=name, deps=deps, init=init, mixture=mixture, phase=phase, role=role, group=group,
                                 scale=scale, languages=languages,
                                 spec=spec if spec.seed == seed else spec.model_copy(update={"seed": seed}),
                                 epochs={k: v for k, v in epochs.get(phase, {}).items() if k in languages}))

    def clone(name, src, scale, seed):
        stages.append(CloneStage(id=name, deps=[src], src=src, factor=cfg.model.factor, snr_db=cfg.model.snr_db,
                                 seed=seed, scale=scale))

    seeds = cfg.run_seeds()
    adapted: dict[int, dict[str, dict[str, str]]] = {}
    for seed in seeds:
        adapted[seed] = seed_lineage(cfg, seed, stages, train, clone)

    merged: list[MergeStage] = []
    if cfg.merge.methods and len(langs) >= 2:
        for seed in seeds:
            sfx = seed_suffix(cfg, seed)
            for scale in cfg.merge.scales:
                if scale in cfg.scales:
                    merged.append(MergeStage(id=f"merge_{scale}{sfx}", deps=[base_of(scale) + sfx,
                                                                             *adapted[seed][scale].values()],
                                             scale=scale, base=base_of(scale) + sfx, models=adapted[seed][scale],
                                             methods=cfg.merge.methods, sizes=cfg.merge.sizes, dtype=cfg.merge.dtype,
                                             parameters=cfg.merge.parameters, compat=cfg.merge.compat, seed=seed,
                                             suffix=sfx))
    stages += merged

    # Scoring is the same for every seed (the first seed's reference and sets): seeds differ in
    # their models only, so their scores pair cell by cell.
    reference = "base_2x" if "2x" in cfg.scales else "base_1x"
    for ots in cfg.eval.off_the_shelf:
        stages.append(ReferenceStage(id=ots.name, source=ots.source))

    scoring = {"tasks": tasks, "reference": reference, "seed": cfg.seed}
    eval_deps = ["pairs", reference]
    evaluated = [s for s in stages if isinstance(s, ReferenceStage) or (isinstance(s, TrainStage) and s.role != "seed")]
    for s in evaluated:
        every_lang = isinstance(s, ReferenceStage) or s.role == "base"
        max_pairs = next((o.max_pairs for o in cfg.eval.off_the_shelf if o.name == s.id), None)
        stages.append(EvalStage(id=f"eval_{s.id}", deps=[s.id, *eval_deps], target=s.id, max_pairs=max_pairs,
                                languages=[*(langs if every_lang else s.languages), ENGLISH], **scoring))
    for m in merged:
        stages.append(EvalMergesStage(id=f"eval_{m.id}", deps=[m.id, *eval_deps], scale=m.scale,
                                      english=cfg.eval.merges_on_english, max_pairs=cfg.eval.merge_max_pairs,
                                      model_seed=model_seed(cfg, m.seed), **scoring))

    # The unigram control of every language's minimal-pair sets (evaluate/controls.py).
    stages.append(ControlStage(id="control_unigram", deps=list(eval_deps), languages=[*langs, ENGLISH], **scoring))
    for seed in seeds:
        sfx = seed_suffix(cfg, seed)
        adapt_runs = [s.id for s in stages if isinstance(s, TrainStage) and s.role == "adapt" and s.group in cfg.scales
                      and s.spec.seed == seed]
        if cfg.eval.checkpoints == "matched" and len(cfg.scales) > 1:
            stages.append(MatchedStage(id=f"eval_matched{sfx}", deps=[*adapt_runs, *eval_deps], scales=cfg.scales,
                                       model_seed=model_seed(cfg, seed), **scoring))
    for seed in seeds:
        sfx = seed_suffix(cfg, seed)
        for scale in cfg.merge.scales:
            if scale in cfg.scales and len(langs) >= 2:
                models = adapted[seed][scale]
                stages.append(VectorsStage(id=f"vectors_{scale}{sfx}", deps=[base_of(scale) + sfx, *models.values()],
                                           scale=scale, base=base_of(scale) + sfx, models=models, suffix=sfx))
                if cfg.analysis.predictors:
                    stages.append(SimilarityStage(id=f"similarity_{scale}{sfx}", deps=[*models.values(), "pairs"],
                                                  scale=scale, models=models, suffix=sfx,
                                                  max_sentences=cfg.analysis.max_sentences))
    stages.append(ReportStage(id="report", deps=[s.id for s in stages]))
    return fingerprint_plan(stages)


def seed_suffix(cfg: StudyConfig, seed: int) -> str:
    """What a seed's stage ids (and so its model names, merge directories and merge names) carry:
    nothing for the first seed, so a one-seed study keeps every id and fingerprint."""
    return "" if seed == cfg.run_seeds()[0] else f"_s{seed}"


def model_seed(cfg: StudyConfig, seed: int) -> int | None:
    """The seed a stage reading the ledger keeps to (its models only); None in a one-seed study."""
    return seed if len(cfg.run_seeds()) > 1 else None


def seed_lineage(cfg: StudyConfig, seed: int, stages: list[Stage], train, clone) -> dict[str, dict[str, str]]:
    """Append one seed's training stages (seed models, bases, adaptations); returns {scale: {lang: id}}."""
    sfx = seed_suffix(cfg, seed)
    langs = list(cfg.data.languages)
    init = cfg.model.init
    train("seed_code" + sfx, init, "seed_code", "seed_code", "seed", "seed", None, [CODE], seed)
    train("seed" + sfx, "seed_code" + sfx, "seed_mixed", "seed_mixed", "seed", "seed", None, [CODE, ENGLISH], seed)
    train("base_1x" + sfx, "seed" + sfx, "base_en", "base", "base", "base_1x", "1x", [ENGLISH], seed)
    if "2x" in cfg.scales:
        clone("seed_2x" + sfx, "seed" + sfx, None, seed)
        train("base_2x" + sfx, "seed_2x" + sfx, "base_en", "base", "base", "base_2x", "2x", [ENGLISH], seed)
    if "1x_cloned" in cfg.scales:
        clone("base_1x_cloned" + sfx, "base_1x" + sfx, "1x_cloned", seed)
    stages += optional_bases(cfg, seed)

    adapted: dict[str, dict[str, str]] = {s: {} for s in cfg.scales}
    for scale in cfg.scales:
        for lang in langs:
            adapted[scale][lang] = f"{scale}_{lang}{sfx}"
            train(f"{scale}_{lang}{sfx}", base_of(scale) + sfx, f"adapt_{lang}", "adapt", "adapt", scale, scale, [lang],
                  seed)
        if cfg.multilingual:
            train(f"{scale}_multi{sfx}", base_of(scale) + sfx, "multi", "multi", "adapt", f"{scale}_multi", scale,
                  langs, seed)
    return adapted


def optional_bases(cfg: StudyConfig, seed: int | None = None) -> list[Stage]:
    """The bases of the opt-in arms: base_1x deepened (no further English), and the random
    initialisation every from-scratch language model starts from (same adapt/multi budgets as the
    other arms; the shared init is what makes their task vectors mergeable at all)."""
    seed = cfg.seed if seed is None else seed
    sfx = seed_suffix(cfg, seed)
    out: list[Stage] = []
    if DEPTH_SCALE in cfg.scales:
        out.append(DeepenStage(id=base_of(DEPTH_SCALE) + sfx, deps=["base_1x" + sfx], src="base_1x" + sfx,
                               depth=cfg.model.depth, scale=DEPTH_SCALE))
    if SCRATCH_SCALE in cfg.scales:
        out.append(InitStage(id=base_of(SCRATCH_SCALE) + sfx, deps=["data"], init=cfg.model.init, seed=seed,
                             scale=SCRATCH_SCALE))
    return out


def fingerprint_plan(stages: list[Stage]) -> list[Stage]:
    ids = [s.id for s in stages]
    twice = next((i for i in ids if ids.count(i) > 1), None)
    if twice:  # e.g. an off-the-shelf model named like a trained one: both would write models/<id>
        raise GrowmergeError(f"two stages of this study are named {twice!r}: rename the off-the-shelf model")
    done: dict[str, str] = {}
    for s in stages:
        missing = [d for d in s.deps if d not in done]
        if missing:  # a bug in build_plan, not a user error
            raise AssertionError(f"stage {s.id} depends on {missing} which come later or not at all")
        s.fingerprint = done[s.id] = fingerprint(s, [done[d] for d in s.deps])
    return stages
