"""Minimal-pair tasks: linguistic acceptability (LA) and factual knowledge (FK)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from growmerge.config import Strict
from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import EvalTask, PrepareEnv, ScoreEnv, pair_rows, register, sample_rows


class LAOptions(Strict):
    pairs: int = Field(300, ge=1)  # generated minimal pairs per language
    extra: dict[str, list[Path]] = Field(default_factory=dict)  # lang -> more files (BLiMP, MultiBLiMP…)


class FKOptions(Strict):
    pairs: int = Field(300, ge=1)  # factual pairs per language (a seeded sample)
    source: str = "cldr"  # "cldr" (offline facts via babel) or an mParaRel directory
    extra: dict[str, list[Path]] = Field(default_factory=dict)


class MinimalPairTask(EvalTask):
    """Accuracy of preferring the good sentence of each pair."""

    def score(self, scorer, data, lang: str, model_dir: Path, env: ScoreEnv) -> list[dict]:
        from growmerge.evaluate.pairs import score_pairs

        return pair_rows(self.name, score_pairs(scorer, data), data.name)


class Acceptability(MinimalPairTask):
    name, short, label, marker = "la", "LA", "LA (accuracy)", "o"
    Options = LAOptions

    def prepare(self, opts: LAOptions, lang: str, env: PrepareEnv) -> None:
        from growmerge.evaluate.perturb.sets import generate_file

        sentences = env.held_out("sentences", f"{lang}.txt")
        if not sentences.is_file():
            return
        try:
            report = generate_file(lang, sentences, env.set_file(self.name, lang), opts.pairs, env.seed)
            env.say(f"LA {lang}: {report['pairs']} pairs ({report['backend']}; {len(report['features'])} features)")
        except GrowmergeError as exc:  # one language without a morphology backend must not stop the study
            env.say(f"LA {lang}: no generated set ({exc})")

    def load(self, source, lang: str, seed: int):
        from growmerge.evaluate.pairs import read_pairs

        return read_pairs(source)


class Knowledge(MinimalPairTask):
    name, short, label, marker = "fk", "FK", "FK (accuracy)", "^"
    Options = FKOptions

    def prepare(self, opts: FKOptions, lang: str, env: PrepareEnv) -> None:
        from growmerge.evaluate.pairs import read_fk
        from growmerge.evaluate.perturb.sets import write_jsonl

        try:
            facts = read_fk(opts.source, lang, env.seed).pairs
        except GrowmergeError as exc:
            env.say(f"FK {lang}: no set ({exc})")
            return
        write_jsonl(sample_rows(facts, opts.pairs, env.seed), env.set_file(self.name, lang))

    def load(self, source, lang: str, seed: int):
        from growmerge.evaluate.pairs import read_fk

        return read_fk(source, lang, seed)


register(Acceptability())
register(Knowledge())
