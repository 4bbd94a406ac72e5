"""Evaluate one model on the registered tasks; the study runner calls this for every model it scores."""

from __future__ import annotations

from pathlib import Path

from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import ScoreEnv, get_task


def score_model(model_dir, lang: str, sets: dict[str, list], env: ScoreEnv = ScoreEnv(), scorer=None) -> list[dict]:
    """Rows ``{model, lang, boundary, task, dataset, metric, value, n}`` of one model on ``{task: [set, …]}``
    (``boundary``: the scorer's document-boundary convention, see ``evaluate.scorer``).

    Every set is read (and validated) before the model is loaded, so a bad file costs no model load.
    """
    loaded = [(get_task(name), get_task(name).load(src, lang, env.seed)) for name, srcs in sets.items() for src in srcs]
    if not loaded:
        raise GrowmergeError("nothing to evaluate: pass --ip, --la or --fk")
    if scorer is None:
        from growmerge.evaluate.scorer import Scorer

        scorer = Scorer.from_dir(model_dir, device=env.device)
    rows = [r for task, data in loaded for r in task.score(scorer, data, lang, Path(str(model_dir)), env)]
    boundary = getattr(scorer, "boundary", None)
    return [{"model": str(model_dir), "lang": lang, "boundary": boundary, **r} for r in rows]


def evaluate_model(model_dir, lang: str, ip_file=None, la_files=(), fk_files=(), reference=None,
                   cache_dir=None, scorer=None, seed: int = 0, device: str = "auto") -> list[dict]:
    """The `growmerge eval` form of :func:`score_model`: IP needs `reference` (the fixed English
    reference model directory); FK sources are ``cldr``, an mParaRel directory, or a pair file."""
    if ip_file is not None and reference is None:
        raise GrowmergeError("Information Parity needs the English reference model: pass --reference DIR")
    sets = {"ip": [ip_file] if ip_file is not None else [], "la": list(la_files), "fk": list(fk_files)}
    return score_model(model_dir, lang, {t: s for t, s in sets.items() if s},
                       ScoreEnv(reference=reference, cache_dir=cache_dir, seed=seed, device=device), scorer=scorer)
