"""Minimal-pair datasets (LA and FK) and their accuracy.

A pair is correct when the model gives the good sentence a higher total log-probability than the bad
one; a tie counts as correct, as in lm-eval (``np.argmax`` picks the first, the good, choice) and
ties are reported. Text conventions follow lm-eval's tasks: BLiMP is scored with a leading space
(``blimp``: empty context, target delimiter " "), MultiBLiMP and our own sets without one
(``multiblimp``: target delimiter "").

Readers return a :class:`PairSet`; rows whose two sentences are identical or empty are skipped and
counted; a malformed line is one error naming the file and line.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from growmerge.errors import GrowmergeError


@dataclass
class PairSet:
    name: str
    pairs: list[dict]  # each {good, bad, phenomenon, ...}
    space_prefix: bool = False
    skipped: int = 0
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------
def jsonl_rows(path: Path):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GrowmergeError(f"{path}: cannot read ({exc})") from None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GrowmergeError(f"{path}:{no}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise GrowmergeError(f"{path}:{no}: expected a JSON object per line")
        yield no, row


def _collect(name: str, path: Path, rows, space_prefix: bool) -> PairSet:
    """Keep usable pairs, count identical/empty ones; an empty result is an error."""
    pairs, skipped = [], 0
    for row in rows:
        if not row["good"].strip() or not row["bad"].strip() or row["good"] == row["bad"]:
            skipped += 1
            continue
        pairs.append(row)
    if not pairs:
        raise GrowmergeError(f"{path}: no usable minimal pairs ({skipped} skipped as empty or identical)")
    return PairSet(name, pairs, space_prefix, skipped)


def _need(path: Path, no: int, row: dict, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if not isinstance(row.get(k), str)]
    if missing:
        raise GrowmergeError(f"{path}:{no}: missing text field(s) {', '.join(missing)}")


def read_blimp(path: str | Path) -> PairSet:
    """BLiMP JSONL (``sentence_good``, ``sentence_bad``, ``UID``); scored with a leading space."""
    path = Path(path)

    def rows():
        for no, r in jsonl_rows(path):
            _need(path, no, r, ("sentence_good", "sentence_bad"))
            yield {"good": r["sentence_good"], "bad": r["sentence_bad"],
                   "phenomenon": r.get("UID") or r.get("linguistics_term") or path.stem}

    return _collect(f"blimp/{path.stem}", path, rows(), space_prefix=True)


def read_multiblimp(path: str | Path) -> PairSet:
    """MultiBLiMP TSV (``sen``, ``wrong_sen``, ``phenomenon``); scored without a leading space."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            table = list(csv.DictReader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GrowmergeError(f"{path}: cannot read as TSV ({exc})") from None
    if not table or not {"sen", "wrong_sen"} <= set(table[0]):
        raise GrowmergeError(f"{path}: expected a TSV with header columns sen, wrong_sen, phenomenon")

    def rows():
        for no, r in enumerate(table, 2):
            if r["sen"] is None or r["wrong_sen"] is None:
                raise GrowmergeError(f"{path}:{no}: missing column(s)")
            yield {"good": r["sen"], "bad": r["wrong_sen"], "phenomenon": r.get("phenomenon") or "all"}

    # The published layout is <lang>/data.tsv: the set is then named by its language folder.
    name = path.parent.name if path.stem == "data" and path.parent.name else path.stem
    return _collect(f"multiblimp/{name}", path, rows(), space_prefix=False)


def read_own(path: str | Path) -> PairSet:
    """Our JSONL: ``{good, bad, phenomenon, ...}`` (extra keys kept); scored without a leading space."""
    path = Path(path)

    def rows():
        for no, r in jsonl_rows(path):
            _need(path, no, r, ("good", "bad"))
            yield {**r, "phenomenon": str(r.get("phenomenon") or r.get("feature") or "all")}

    return _collect(path.stem, path, rows(), space_prefix=False)


def read_pairs(path: str | Path) -> PairSet:
    """Any pair file, by its format: ``.tsv`` MultiBLiMP, JSONL with ``sentence_good`` BLiMP, a
    ``.yaml`` column mapping of any table (:func:`readers.read_mapped`), else ours; a directory is all
    its pair files as one set (BLiMP's paradigm files)."""
    path = Path(path)
    if path.is_dir():
        from growmerge.evaluate.readers import read_pair_dir

        return read_pair_dir(path)
    if not path.is_file():
        raise GrowmergeError(f"{path}: no such pair file")
    if path.suffix in (".yaml", ".yml"):
        from growmerge.evaluate.readers import read_mapped

        return read_mapped(path)
    if path.suffix == ".tsv":
        return read_multiblimp(path)
    first = next(jsonl_rows(path), None)
    if first is None:
        raise GrowmergeError(f"{path}: empty pair file")
    return read_blimp(path) if "sentence_good" in first[1] else read_own(path)


# ---------------------------------------------------------------------------------------------
# Factual knowledge: mParaRel and CLDR
# ---------------------------------------------------------------------------------------------
def read_mpararel(root: str | Path, lang: str, seed: int = 0, max_patterns: int = 1,
                  max_per_relation: int | None = None) -> PairSet:
    """FK pairs from mParaRel: each tuple in up to `max_patterns` cloze patterns, the true object
    vs a wrong object of the same relation (drawn with `seed`)."""
    root = Path(root)
    pat_dir, tup_dir = root / "patterns" / lang, root / "tuples" / lang
    if not pat_dir.is_dir() or not tup_dir.is_dir():
        raise GrowmergeError(f"{root}: no patterns/{lang} and tuples/{lang} folders (an mParaRel directory)")
    rng = random.Random(seed)
    out = []
    for tup_file in sorted(tup_dir.glob("P*.jsonl")):
        pat_file = pat_dir / tup_file.name
        if not pat_file.is_file():
            continue
        patterns = [r["pattern"] for _, r in jsonl_rows(pat_file)
                    if "[X]" in r.get("pattern", "") and "[Y]" in r.get("pattern", "")][:max_patterns]
        tuples = [r for _, r in jsonl_rows(tup_file) if r.get("sub_label") and r.get("obj_label")]
        objects = sorted({t["obj_label"] for t in tuples})
        if not patterns or len(objects) < 2:
            continue
        if max_per_relation:
            tuples = rng.sample(tuples, min(max_per_relation, len(tuples)))
        for t in tuples:
            wrong = rng.choice([o for o in objects if o != t["obj_label"]])
            for p in patterns:
                fill = p.replace("[X]", t["sub_label"])
                out.append({"good": fill.replace("[Y]", t["obj_label"]), "bad": fill.replace("[Y]", wrong),
                            "phenomenon": tup_file.stem})
    return _collect(f"mpararel/{lang}", root, out, space_prefix=False)


# Templates for CLDR relations: {x} = territory name, {y} = the object (language or currency name).
CLDR_TEMPLATES = {
    "en": {"language": "The official language of {x} is {y}.", "currency": "The currency of {x} is the {y}."},
    "sv": {"language": "Det officiella språket i {x} är {y}.", "currency": "Valutan i {x} är {y}."},
    "da": {"language": "Det officielle sprog i {x} er {y}.", "currency": "Valutaen i {x} er {y}."},
    "is": {"language": "Opinbert tungumál í landinu {x} er {y}.", "currency": "Gjaldmiðill í landinu {x} er {y}."},
    "et": {"language": "Riigi {x} ametlik keel on {y}.", "currency": "Riigi {x} rahaühik on {y}."},
    "fa": {"language": "زبان رسمی {x} {y} است.", "currency": "واحد پول {x} {y} است."},
}


def cldr_facts(lang: str, seed: int = 0) -> PairSet:
    """FK pairs from CLDR (babel): official language and currency of each territory, localized."""
    from babel import Locale, UnknownLocaleError
    from babel.languages import get_official_languages
    from babel.numbers import get_territory_currencies

    if lang not in CLDR_TEMPLATES:
        raise GrowmergeError(f"no CLDR fact templates for {lang!r}; choose one of {', '.join(CLDR_TEMPLATES)}")
    try:
        loc = Locale.parse(lang)
    except (UnknownLocaleError, ValueError):
        raise GrowmergeError(f"babel has no CLDR locale {lang!r}") from None
    facts = {"language": [], "currency": []}
    for code, name in sorted(loc.territories.items()):
        if not code.isalpha() or len(code) != 2:
            continue  # regions such as 001 or EU are not countries
        langs = [loc.languages.get(x) for x in get_official_languages(code, de_facto=True)]
        curs = [loc.currencies.get(c) for c in get_territory_currencies(code)]
        if langs and langs[0]:
            facts["language"].append((name, langs[0]))
        if curs and curs[0]:
            facts["currency"].append((name, curs[0]))
    rng = random.Random(seed)
    out = []
    for relation, rows in facts.items():
        objects = sorted({y for _, y in rows})
        template = CLDR_TEMPLATES[lang][relation]
        for x, y in rows:
            wrong = rng.choice([o for o in objects if o != y])
            out.append({"good": template.format(x=x, y=y), "bad": template.format(x=x, y=wrong),
                        "phenomenon": relation})
    return _collect(f"cldr/{lang}", Path(f"cldr:{lang}"), out, space_prefix=False)


def read_fk(spec: str | Path, lang: str, seed: int = 0, k: int = 1) -> PairSet:
    """An FK source: ``cldr`` (offline facts), an mParaRel directory (every pattern × every tuple, `k`
    wrong objects each, as the paper), or any pair file."""
    if str(spec) == "cldr":
        return cldr_facts(lang, seed)
    path = Path(spec)
    if path.is_dir() and (path / "patterns").is_dir():
        from growmerge.evaluate.readers import read_mpararel_all

        return read_mpararel_all(path, lang, k=k, seed=seed)
    return read_pairs(path)


# ---------------------------------------------------------------------------------------------
# Accuracy
# ---------------------------------------------------------------------------------------------
def score_pairs(scorer, pairs: PairSet | list[dict], space_prefix: bool | None = None) -> dict:
    """Accuracy overall and per phenomenon, with n, ties and the mean good−bad log-prob gap.

    ``scores`` holds per-pair (good, bad) log-probabilities conditional on the pair's common token
    prefix (their difference equals that of the totals)."""
    if isinstance(pairs, PairSet):
        space = pairs.space_prefix if space_prefix is None else space_prefix
        skipped, rows = pairs.skipped, pairs.pairs
    else:
        space, skipped, rows = bool(space_prefix), 0, pairs
    pre = " " if space else ""
    # Conditional scores: the pair's common token prefix has the same log-probability in both
    # sentences, so leaving it out changes no gap and no decision, and saves its output-layer rows.
    scores = scorer.score_minimal_pairs([(pre + r["good"], pre + r["bad"]) for r in rows], conditional=True)
    per: dict[str, list[int]] = {}
    correct = ties = 0
    for r, (lg, lb) in zip(rows, scores):
        ok = lg >= lb  # a tie counts as correct, as lm-eval's argmax does
        ties += lg == lb
        correct += ok
        per.setdefault(r.get("phenomenon", "all"), []).append(int(ok))
    n = len(rows)
    return {
        "accuracy": correct / n if n else float("nan"), "n": n, "ties": ties, "skipped": skipped,
        "mean_gap": sum(g - b for g, b in scores) / n if n else float("nan"),
        "per_phenomenon": {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(per.items())},
        "scores": scores,
    }
