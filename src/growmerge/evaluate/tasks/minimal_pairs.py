"""Minimal-pair tasks: linguistic acceptability (LA) and factual knowledge (FK)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from growmerge.config import Strict
from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import EvalInput, EvalTask, PrepareEnv, ScoreEnv, pair_rows, register, row, sample_rows


class LAOptions(Strict):
    pairs: int = Field(300, ge=1)  # generated minimal pairs per language
    extra: dict[str, list[Path]] = Field(default_factory=dict)  # lang -> more files (BLiMP, MultiBLiMP…)
    # lang -> a judgement file (`growmerge pairs audit`): its judged pairs found in the generated set
    # give the set's validity rate (share of "bad" sentences judged ungrammatical)
    judgements: dict[str, Path] = Field(default_factory=dict)
    # the findings table uses only LA sets whose measured validity is at least this
    min_validity: float = Field(0.8, ge=0.0, le=1.0)


class FKOptions(Strict):
    pairs: int = Field(300, ge=1)  # factual pairs per language (a seeded sample)
    source: str = "cldr"  # "cldr" (offline facts via babel) or an mParaRel directory
    k: int = Field(1, ge=1)  # mParaRel: wrong objects per tuple (each a pair with every pattern)
    extra: dict[str, list[Path]] = Field(default_factory=dict)


def extra_inputs(task: str, extra: dict[str, list[Path]], read) -> list[EvalInput]:
    """Each file of ``eval.tasks.<task>.extra.<lang>``, read for its language."""
    return [EvalInput(f"eval.tasks.{task}.extra.{lang}[{i}]", path, lambda p=path, lang=lang: read(p, lang))
            for lang, paths in extra.items() for i, path in enumerate(paths)]


class MinimalPairTask(EvalTask):
    """Accuracy of preferring the good sentence of each pair."""

    def score(self, scorer, data, lang: str, model_dir: Path, env: ScoreEnv) -> list[dict]:
        from growmerge.evaluate.pairs import score_pairs

        rows = pair_rows(self.name, score_pairs(scorer, data), data.name)
        validity = (data.meta or {}).get("validity")
        if validity:  # a property of the set, recorded beside every model's accuracy on it
            rows.append(row(self.name, data.name, "validity", validity["rate"], validity["judged"]))
        return rows


class Acceptability(MinimalPairTask):
    name, short, label, marker = "la", "LA", "LA (accuracy)", "o"
    Options = LAOptions

    def prepare(self, opts: LAOptions, lang: str, env: PrepareEnv) -> None:
        from growmerge.evaluate.perturb.sets import generate_file

        sentences = env.held_out("sentences", f"{lang}.txt")
        if not sentences.is_file():
            return
        out = env.set_file(self.name, lang)
        try:
            report = generate_file(lang, sentences, out, opts.pairs, env.seed)
            env.say(f"LA {lang}: {report['pairs']} pairs ({report['backend']}, {report['method']}; "
                    f"{len(report['rules'])} rules)")
        except GrowmergeError as exc:  # one language without a morphology backend must not stop the study
            env.say(f"LA {lang}: no generated set ({exc})")
            return
        if lang in opts.judgements:
            from growmerge.evaluate.perturb import audit

            judged = audit.read_judgements(opts.judgements[lang])  # a missing or malformed file is an error
            try:
                result = audit.validity(audit.read_set(out), judged, str(opts.judgements[lang]))
            except GrowmergeError as exc:  # judged on other text: the set's validity stays unmeasured
                env.say(f"LA {lang}: validity not measured ({exc})")
                return
            audit.write_meta(out, validity=result)
            env.say(f"LA {lang}: validity {result['rate']:.2f} ({result['judged']} judged pairs)")

    def inputs(self, opts: LAOptions, langs: list[str], seed: int = 0) -> list[EvalInput]:
        from growmerge.evaluate.perturb.audit import read_judgements

        return extra_inputs(self.name, opts.extra, lambda p, lang: self.load(p, lang, seed)) + [
            EvalInput(f"eval.tasks.la.judgements.{lang}", path, lambda p=path: read_judgements(p))
            for lang, path in opts.judgements.items()]

    def load(self, source, lang: str, seed: int):
        from growmerge.evaluate.pairs import read_pairs
        from growmerge.evaluate.perturb.audit import read_meta

        data = read_pairs(source)
        if Path(source).suffix == ".jsonl":
            data.meta = {**data.meta, **read_meta(source)}
        return data


class Knowledge(MinimalPairTask):
    name, short, label, marker = "fk", "FK", "FK (accuracy)", "^"
    Options = FKOptions

    def prepare(self, opts: FKOptions, lang: str, env: PrepareEnv) -> None:
        from growmerge.evaluate.pairs import read_fk
        from growmerge.evaluate.perturb.sets import write_jsonl

        try:
            facts = read_fk(opts.source, lang, env.seed, k=opts.k).pairs
        except GrowmergeError as exc:
            env.say(f"FK {lang}: no set ({exc})")
            return
        write_jsonl(sample_rows(facts, opts.pairs, env.seed), env.set_file(self.name, lang))

    def inputs(self, opts: FKOptions, langs: list[str], seed: int = 0) -> list[EvalInput]:
        from growmerge.evaluate.pairs import read_fk

        out = extra_inputs(self.name, opts.extra, lambda p, lang: read_fk(p, lang, seed, k=opts.k))
        if opts.source not in BUILTIN_SOURCES:
            out.append(EvalInput("eval.tasks.fk.source", Path(opts.source),
                                 lambda: source_sets(opts, langs, seed)))
        return out

    def load(self, source, lang: str, seed: int):
        from growmerge.evaluate.pairs import read_fk

        return read_fk(source, lang, seed)


BUILTIN_SOURCES = ("cldr",)


def source_sets(opts: FKOptions, langs: list[str], seed: int) -> dict:
    """The FK source read for each language it covers. An mParaRel directory need not cover every
    language (it has no Faroese; the pairs stage then makes no FK set for it) but must cover one."""
    from growmerge.evaluate.pairs import read_fk

    root = Path(opts.source)
    if not (root.is_dir() and (root / "patterns").is_dir()):
        return {lang: read_fk(root, lang, seed, k=opts.k) for lang in langs[:1]}  # one pair file for all
    covered = [lang for lang in langs if (root / "patterns" / lang).is_dir()]
    if not covered:
        raise GrowmergeError(f"{root}: no patterns/<lang> folder for any of {', '.join(langs)} (an mParaRel "
                             "directory)")
    return {lang: read_fk(root, lang, seed, k=opts.k) for lang in covered}


register(Acceptability())
register(Knowledge())
