"""Evaluate one model on IP, LA and FK; the study runner calls this for every model it evaluates."""

from __future__ import annotations

from pathlib import Path

from growmerge.errors import GrowmergeError


def _row(model, lang, task, dataset, metric, value, n) -> dict:
    return {"model": str(model), "lang": lang, "task": task, "dataset": dataset, "metric": metric,
            "value": float(value), "n": int(n)}


def pair_rows(model, lang: str, task: str, result: dict, dataset: str) -> list[dict]:
    """Rows for a minimal-pair result: overall accuracy, ties, skipped, and accuracy per phenomenon."""
    rows = [_row(model, lang, task, dataset, "accuracy", result["accuracy"], result["n"]),
            _row(model, lang, task, dataset, "ties", result["ties"], result["n"])]
    if result["skipped"]:
        rows.append(_row(model, lang, task, dataset, "skipped", result["skipped"], result["n"]))
    for ph, r in result["per_phenomenon"].items():
        if len(result["per_phenomenon"]) > 1:
            rows.append(_row(model, lang, task, dataset, f"accuracy/{ph}", r["accuracy"], r["n"]))
    return rows


def evaluate_model(model_dir, lang: str, ip_file=None, la_files=(), fk_files=(), reference=None,
                   cache_dir=None, scorer=None, seed: int = 0) -> list[dict]:
    """Rows ``{model, lang, task: ip|la|fk, dataset, metric, value, n}`` for one model.

    IP needs `reference` (the fixed English reference model directory); for ``lang == "en"`` the
    model scores the English side itself (forgetting). FK sources: ``cldr``, an mParaRel directory,
    or a pair file. Datasets are read (and validated) before the model is loaded.
    """
    from growmerge.evaluate.pairs import read_fk, read_pairs, score_pairs
    from growmerge.evaluate.parity import information_parity, read_parallel, reference_nll
    from growmerge.evaluate.scorer import Scorer

    if ip_file is not None and reference is None:
        raise GrowmergeError("Information Parity needs the English reference model: pass --reference DIR")
    parallel = read_parallel(ip_file) if ip_file is not None else None
    la_sets = [read_pairs(f) for f in la_files]
    fk_sets = [read_fk(f, lang, seed) for f in fk_files]
    if parallel is None and not la_sets and not fk_sets:
        raise GrowmergeError("nothing to evaluate: pass --ip, --la or --fk")

    scorer = scorer or Scorer.from_dir(model_dir)
    rows: list[dict] = []
    if parallel is not None:
        same = Path(str(reference)).resolve() == Path(str(model_dir)).resolve()
        ref = reference_nll(reference, ip_file, cache_dir, scorer=scorer if same else None)
        side = [{"tgt": r["en"]} for r in parallel] if lang == "en" else parallel
        ip = information_parity(scorer, side, ref)
        name = Path(ip_file).stem
        rows += [_row(model_dir, lang, "ip", name, "ip", ip["value"], ip["n"]),
                 _row(model_dir, lang, "ip", name, "ip_std", ip["std"], ip["n"])]
        if ip["skipped"]:
            rows.append(_row(model_dir, lang, "ip", name, "skipped", ip["skipped"], ip["n"]))
    for task, sets in (("la", la_sets), ("fk", fk_sets)):
        for ps in sets:
            rows += pair_rows(model_dir, lang, task, score_pairs(scorer, ps), ps.name)
    return rows
