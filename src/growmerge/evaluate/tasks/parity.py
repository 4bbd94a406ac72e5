"""Information Parity (IP): the model's NLL of English over its NLL of the parallel target text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from growmerge.config import Strict
from growmerge.errors import GrowmergeError
from growmerge.evaluate.tasks import EvalInput, EvalTask, PrepareEnv, ScoreEnv, register, row
from growmerge.names import ENGLISH


class IPOptions(Strict):
    max_pairs: int = Field(200, ge=1)  # parallel pairs per language (the first N, fixed)
    files: dict[str, Path] = Field(default_factory=dict)  # lang -> parallel JSONL instead of the data stage's
    # a FLORES+ directory (dev/ and devtest/): every language not in `files` is paired with English by id
    flores: Path | None = None
    flores_split: Literal["dev", "devtest"] = "devtest"


def parallel_rows(opts: IPOptions, lang: str) -> list[dict] | None:
    """The parallel rows the options give `lang` ({id, en, tgt, lang}), or None (the data stage's)."""
    from growmerge.evaluate.parity import read_parallel

    if lang in opts.files:
        rows = read_parallel(opts.files[lang])
        odd = next((r for r in rows if r.get("lang") not in (None, lang)), None)
        if odd is not None:  # a file of another language under this key would measure that language
            raise GrowmergeError(f"{opts.files[lang]}: rows are lang {odd['lang']!r}, named for {lang}")
        return rows
    if opts.flores is not None:
        from growmerge.evaluate.readers import flores_parallel

        return flores_parallel(opts.flores, lang, opts.flores_split)
    return None


class InformationParity(EvalTask):
    name, short, label, marker, headline = "ip", "IP", "IP", "s", "ip"
    Options = IPOptions

    def prepare(self, opts: IPOptions, lang: str, env: PrepareEnv) -> None:
        from growmerge.evaluate.pairs import jsonl_rows
        from growmerge.evaluate.perturb.sets import write_jsonl

        rows = parallel_rows(opts, lang)
        if rows is None:
            parallel = env.held_out("parallel", f"{lang}.jsonl")
            if not parallel.is_file():
                raise GrowmergeError(f"{parallel}: missing (the data stage writes it)")
            rows = [r for _, r in jsonl_rows(parallel)]
        write_jsonl(rows[: opts.max_pairs], env.set_file(self.name, lang))

    def inputs(self, opts: IPOptions, langs: list[str], seed: int = 0) -> list[EvalInput]:
        out = [EvalInput(f"eval.tasks.ip.files.{lang}", path, lambda lang=lang: parallel_rows(opts, lang))
               for lang, path in opts.files.items()]
        if opts.flores is not None:
            rest = [lang for lang in langs if lang not in opts.files]
            out.append(EvalInput("eval.tasks.ip.flores", opts.flores,
                                 lambda: [parallel_rows(opts, lang) for lang in rest]))
        return out

    def load(self, source, lang: str, seed: int):
        from growmerge.evaluate.parity import read_parallel

        return Path(source), read_parallel(source)

    def score(self, scorer, data, lang: str, model_dir: Path, env: ScoreEnv) -> list[dict]:
        from growmerge.evaluate.parity import information_parity, reference_nll

        path, parallel = data
        if env.reference is None:
            raise GrowmergeError("Information Parity needs the English reference model: pass --reference DIR")
        same = Path(str(env.reference)).resolve() == Path(str(model_dir)).resolve()
        ref = reference_nll(env.reference, path, env.cache_dir, scorer=scorer if same else None, device=env.device)
        # On English the model scores the English side itself: its forgetting, against the reference.
        side = [{"tgt": r["en"]} for r in parallel] if lang == ENGLISH else parallel
        ip = information_parity(scorer, side, ref)
        rows = [row(self.name, path.stem, "ip", ip["value"], ip["n"]),
                row(self.name, path.stem, "ip_std", ip["std"], ip["n"])]
        if ip["skipped"]:
            rows.append(row(self.name, path.stem, "skipped", ip["skipped"], ip["n"]))
        return rows


register(InformationParity())
