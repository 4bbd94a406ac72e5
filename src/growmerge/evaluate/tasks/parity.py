"""Information Parity (IP): the model's NLL of English over its NLL of the parallel target text."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from growmerge.config import Strict
from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import EvalTask, PrepareEnv, ScoreEnv, register, row
from growmerge.names import ENGLISH


class IPOptions(Strict):
    max_pairs: int = Field(200, ge=1)  # parallel pairs per language (the first N, fixed)
    files: dict[str, Path] = Field(default_factory=dict)  # lang -> parallel JSONL instead of the data stage's


class InformationParity(EvalTask):
    name, short, label, marker, headline = "ip", "IP", "IP", "s", "ip"
    Options = IPOptions

    def prepare(self, opts: IPOptions, lang: str, env: PrepareEnv) -> None:
        from growmerge.evaluate.pairs import jsonl_rows
        from growmerge.evaluate.perturb.sets import write_jsonl

        parallel = opts.files.get(lang) or env.held_out("parallel", f"{lang}.jsonl")
        if not Path(parallel).is_file():
            raise GrowmergeError(f"{parallel}: missing (the data stage writes it)")
        write_jsonl([r for _, r in jsonl_rows(Path(parallel))][: opts.max_pairs], env.set_file(self.name, lang))

    def load(self, source, lang: str, seed: int):
        from growmerge.evaluate.parity import read_parallel

        return Path(source), read_parallel(source)

    def score(self, scorer, data, lang: str, model_dir: Path, env: ScoreEnv) -> list[dict]:
        from growmerge.evaluate.parity import information_parity, reference_nll

        path, parallel = data
        if env.reference is None:
            raise GrowmergeError("Information Parity needs the English reference model: pass --reference DIR")
        same = Path(str(env.reference)).resolve() == Path(str(model_dir)).resolve()
        ref = reference_nll(env.reference, path, env.cache_dir, scorer=scorer if same else None)
        # On English the model scores the English side itself: its forgetting, against the reference.
        side = [{"tgt": r["en"]} for r in parallel] if lang == ENGLISH else parallel
        ip = information_parity(scorer, side, ref)
        rows = [row(self.name, path.stem, "ip", ip["value"], ip["n"]),
                row(self.name, path.stem, "ip_std", ip["std"], ip["n"])]
        if ip["skipped"]:
            rows.append(row(self.name, path.stem, "skipped", ip["skipped"], ip["n"]))
        return rows


register(InformationParity())
