"""A toy evaluation task, declared in this one file: mean negative log-likelihood per character of
the first held-out sentences of each language. Importing this module registers it."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field

from growmerge.config import Strict
from growmerge.evaluate.tasks import EvalTask, PrepareEnv, ScoreEnv, register, row


class ToyOptions(Strict):
    sentences: int = Field(5, ge=1)


class NllPerChar(EvalTask):
    name, short, label, marker, headline = "toy_nll", "NLL/char", "NLL per character", "x", "nll"
    Options = ToyOptions

    def prepare(self, opts: ToyOptions, lang: str, env: PrepareEnv) -> None:
        source = env.held_out("sentences", f"{lang}.txt")
        if source.is_file():
            out = env.set_file(self.name, lang)
            out.parent.mkdir(parents=True, exist_ok=True)
            lines = [s for s in source.read_text(encoding="utf-8").splitlines() if s.strip()][: opts.sentences]
            out.write_text("".join(json.dumps({"text": s}) + "\n" for s in lines), encoding="utf-8")

    def load(self, source, lang: str, seed: int):
        return Path(source).stem, [json.loads(line)["text"] for line in Path(source).read_text().splitlines()]

    def score(self, scorer, data, lang: str, model_dir: Path, env: ScoreEnv) -> list[dict]:
        name, texts = data
        nll = scorer.sequence_nll(texts)
        return [row(self.name, name, "nll", sum(nll) / sum(len(t) for t in texts), len(texts))]


register(NllPerChar())
