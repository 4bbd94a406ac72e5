"""Readers for the public evaluation sets in their published formats.

- FLORES+ (``openlanguagedata/flores_plus``): one row per sentence with ``id``, ``iso_639_3``,
  ``iso_15924`` and ``text``, one file per language and split (``dev/``, ``devtest/``; Parquet as
  published, or JSONL/CSV/TSV with the same columns). :func:`flores_parallel` pairs any two languages
  by sentence id into the ``{id, en, tgt, lang}`` rows of Information Parity.
- BLiMP as a directory of its paradigm files (67 JSONL files) or one file.
- mParaRel (``patterns/<lang>/P*.jsonl`` and ``tuples/<lang>/P*.jsonl``): every pattern × every tuple,
  each with k wrong objects from the same relation; malformed patterns are skipped and counted.
- Any minimal-pair table (CSV, TSV or JSONL) through a small YAML mapping file (``*.pairs.yaml``):
  ``{file, good, bad, phenomenon?, space_prefix?}``, so GED-style sets need no code.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

from growmerge.errors import GrowmergeError

# growmerge's language codes -> FLORES+ codes (ISO 639-3 _ ISO 15924); any full code passes through.
FLORES_CODES = {"en": "eng_Latn", "sv": "swe_Latn", "da": "dan_Latn", "is": "isl_Latn", "et": "ekk_Latn",
                "fa": "pes_Arab", "fo": "fao_Latn", "no": "nob_Latn", "nb": "nob_Latn", "fi": "fin_Latn",
                "de": "deu_Latn"}
FLORES_SPLITS = ("dev", "devtest")
_FLORES_CODE = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")


def flores_code(lang: str) -> str:
    if _FLORES_CODE.match(lang):
        return lang
    if lang in FLORES_CODES:
        return FLORES_CODES[lang]
    raise GrowmergeError(f"no FLORES+ code for language {lang!r}: give it as ISO 639-3_ISO 15924 (e.g. swe_Latn)")


def _table_rows(path: Path) -> list[dict]:
    """Rows of a Parquet, JSONL, CSV or TSV file as dicts (one error naming the file when unreadable)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
        except ImportError:
            raise GrowmergeError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
        except Exception as exc:  # pyarrow raises its own types for a corrupt file
            raise GrowmergeError(f"{path}: not a readable Parquet file ({exc})") from None
    if suffix in (".jsonl", ".json"):
        from growmerge.evaluate.pairs import jsonl_rows

        return [{**r, "_line": no} for no, r in jsonl_rows(path)]
    if suffix in (".tsv", ".csv"):
        try:
            with open(path, encoding="utf-8", newline="") as fh:
                reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
                rows = [{**r, "_line": reader.line_num} for r in reader]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise GrowmergeError(f"{path}: cannot read as {suffix[1:].upper()} ({exc})") from None
        for r in rows:
            if None in r or any(v is None for v in r.values()):
                raise GrowmergeError(f"{path}:{r['_line']}: the row's column count differs from the header's")
        return rows
    raise GrowmergeError(f"{path}: unknown table format {suffix or '(no suffix)'} (parquet, jsonl, csv or tsv)")


# ---------------------------------------------------------------------------------------------
# FLORES+
# ---------------------------------------------------------------------------------------------
def flores_file(root: str | Path, lang: str, split: str = "devtest") -> Path:
    """The file of `lang` in `split` under a FLORES+ checkout (``<split>/<code>.<ext>``, also one level deeper)."""
    root, code = Path(root), flores_code(lang)
    if split not in FLORES_SPLITS:
        raise GrowmergeError(f"FLORES+ split {split!r}: choose dev or devtest")
    if not (root / split).is_dir():
        raise GrowmergeError(f"{root}: no {split}/ folder (a FLORES+ directory has dev/ and devtest/)")
    found = sorted(p for p in (root / split).rglob(f"{code}.*")
                   if p.suffix.lower() in (".parquet", ".jsonl", ".csv", ".tsv"))
    if not found:
        raise GrowmergeError(f"{root / split}: no file for {code} ({code}.parquet)")
    return found[0]


def read_flores(path: str | Path) -> dict[int | str, str]:
    """One FLORES+ language file -> {sentence id: text}; codes checked against the file name."""
    path = Path(path)
    if not path.is_file():
        raise GrowmergeError(f"{path}: no such FLORES+ file")
    rows = _table_rows(path)
    if not rows:
        raise GrowmergeError(f"{path}: empty FLORES+ file")
    out: dict = {}
    for i, r in enumerate(rows, 1):
        where = f"{path}:{r.get('_line', i)}"
        missing = [k for k in ("id", "iso_639_3", "iso_15924", "text") if r.get(k) in (None, "")]
        if missing:
            raise GrowmergeError(f"{where}: a FLORES+ row needs {', '.join(missing)}")
        code = f"{r['iso_639_3']}_{r['iso_15924']}"
        if _FLORES_CODE.match(path.stem) and code != path.stem:
            raise GrowmergeError(f"{where}: row is {code} but the file is {path.stem}")
        try:
            sid = int(r["id"])
        except (TypeError, ValueError):
            raise GrowmergeError(f"{where}: sentence id {r['id']!r} is not an integer") from None
        if sid in out:
            raise GrowmergeError(f"{where}: sentence id {sid} appears twice")
        if not isinstance(r["text"], str) or not r["text"].strip():
            raise GrowmergeError(f"{where}: empty text")
        out[sid] = r["text"]
    return out


def flores_parallel(root: str | Path, lang: str, split: str = "devtest", source: str = "en") -> list[dict]:
    """Parallel rows ``{id, en, tgt, lang}`` of `source` (the "en" side) and `lang`, matched by sentence id.
    Ids present on one side only are left out; none in common is an error."""
    src_file, tgt_file = flores_file(root, source, split), flores_file(root, lang, split)
    src, tgt = read_flores(src_file), read_flores(tgt_file)
    ids = sorted(set(src) & set(tgt))
    if not ids:
        raise GrowmergeError(f"{tgt_file}: no sentence id in common with {src_file}")
    return [{"id": i, "en": src[i], "tgt": tgt[i], "lang": lang} for i in ids]


# ---------------------------------------------------------------------------------------------
# BLiMP (directory) and generic pair files
# ---------------------------------------------------------------------------------------------
def read_pair_dir(path: str | Path):
    """Every pair file of a directory as one set (BLiMP's 67 paradigm files, or MultiBLiMP TSVs);
    the phenomenon is each row's paradigm (BLiMP ``UID``). All files must share one text convention."""
    from growmerge.evaluate.pairs import PairSet, read_pairs

    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".jsonl", ".tsv")
                   and not p.name.endswith(".meta.json"))
    if not files:
        raise GrowmergeError(f"{path}: no pair files (*.jsonl or *.tsv) in the directory")
    sets = [read_pairs(f) for f in files]
    spaces = {s.space_prefix for s in sets}
    if len(spaces) > 1:
        odd = next(f for f, s in zip(files, sets) if s.space_prefix != sets[0].space_prefix)
        raise GrowmergeError(f"{odd}: its format differs from {files[0].name}'s (BLiMP and other pair files mixed)")
    kind = "blimp" if sets[0].name.startswith("blimp/") else "pairs"
    return PairSet(f"{kind}/{path.name}", [p for s in sets for p in s.pairs], spaces.pop(),
                   sum(s.skipped for s in sets), {"files": len(files)})


MAPPING_KEYS = {"file", "good", "bad", "phenomenon", "space_prefix", "name"}


def read_mapped(spec: str | Path):
    """A pair table described by a YAML mapping file, e.g. for DaLAJ-GED::

        file: dalaj-ged.tsv          # CSV, TSV or JSONL; relative to the YAML file
        good: corrected_sentence     # column of the acceptable sentence
        bad: original_sentence       # column of the unacceptable one
        phenomenon: error_label      # optional column
        space_prefix: false          # optional: score with a leading space (as BLiMP)
    """
    import yaml

    from growmerge.evaluate.pairs import _collect

    spec = Path(spec)
    try:
        m = yaml.safe_load(spec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise GrowmergeError(f"{spec}: cannot read the pair mapping ({str(exc).splitlines()[0]})") from None
    if not isinstance(m, dict) or not all(isinstance(m.get(k), str) and m[k] for k in ("file", "good", "bad")):
        raise GrowmergeError(f"{spec}: a pair mapping needs text keys file, good and bad")
    unknown = set(m) - MAPPING_KEYS
    if unknown:
        raise GrowmergeError(f"{spec}: unknown key(s) {', '.join(sorted(unknown))} (allowed: "
                             f"{', '.join(sorted(MAPPING_KEYS))})")
    if not isinstance(m.get("space_prefix", False), bool):
        raise GrowmergeError(f"{spec}: space_prefix must be true or false")
    table = (spec.parent / m["file"]) if not Path(m["file"]).is_absolute() else Path(m["file"])
    if not table.is_file():
        raise GrowmergeError(f"{spec}: its file {table} does not exist")
    rows = _table_rows(table)
    if not rows:
        raise GrowmergeError(f"{table}: empty pair table")
    cols = [m["good"], m["bad"]] + ([m["phenomenon"]] if m.get("phenomenon") else [])
    missing = [c for c in cols if c not in rows[0]]
    if missing:
        raise GrowmergeError(f"{table}: no column(s) {', '.join(missing)} (named in {spec.name}; the table has "
                             f"{', '.join(k for k in rows[0] if k != '_line')})")

    def pairs():
        for i, r in enumerate(rows, 1):
            good, bad = r.get(m["good"]), r.get(m["bad"])
            if not isinstance(good, str) or not isinstance(bad, str):
                raise GrowmergeError(f"{table}:{r.get('_line', i)}: {m['good']} and {m['bad']} must be text")
            ph = str(r.get(m["phenomenon"]) or "all") if m.get("phenomenon") else "all"
            yield {"good": good, "bad": bad, "phenomenon": ph}

    name = m.get("name") or spec.name.removesuffix(".yaml").removesuffix(".yml").removesuffix(".pairs")
    return _collect(str(name), table, pairs(), space_prefix=bool(m.get("space_prefix", False)))


# ---------------------------------------------------------------------------------------------
# mParaRel: every pattern x every tuple
# ---------------------------------------------------------------------------------------------
def pattern_ok(pattern: str) -> bool:
    """A cloze pattern with exactly one [X], one [Y] and no other bracket (``[X]n]`` is malformed)."""
    if pattern.count("[X]") != 1 or pattern.count("[Y]") != 1:
        return False
    rest = pattern.replace("[X]", "", 1).replace("[Y]", "", 1)
    return "[" not in rest and "]" not in rest and bool(rest.strip(" .,"))


def read_mpararel_all(root: str | Path, lang: str, k: int = 1, seed: int = 0):
    """FK pairs from mParaRel as in the paper: every well-formed pattern × every tuple of each relation,
    the true object vs each of `k` wrong objects of the same relation (drawn once per tuple, with
    `seed`, and shared by the tuple's patterns). Malformed patterns are skipped and counted in
    ``meta["malformed_patterns"]``; duplicate patterns of a relation count once."""
    from growmerge.evaluate.pairs import PairSet, jsonl_rows

    if k < 1:
        raise GrowmergeError(f"mParaRel distractors k={k}: must be at least 1")
    root = Path(root)
    pat_dir, tup_dir = root / "patterns" / lang, root / "tuples" / lang
    if not pat_dir.is_dir() or not tup_dir.is_dir():
        raise GrowmergeError(f"{root}: no patterns/{lang} and tuples/{lang} folders (an mParaRel directory)")
    out: list[dict] = []
    malformed: list[str] = []
    meta = {"relations": 0, "patterns": 0, "tuples": 0, "k": k, "no_patterns": [], "one_object": [],
            "duplicate_patterns": 0}
    for tup_file in sorted(tup_dir.glob("P*.jsonl")):
        pat_file = pat_dir / tup_file.name
        if not pat_file.is_file():
            meta["no_patterns"].append(tup_file.stem)
            continue
        patterns: list[str] = []
        for no, r in jsonl_rows(pat_file):
            p = r.get("pattern")
            if not isinstance(p, str):
                raise GrowmergeError(f"{pat_file}:{no}: no 'pattern' text")
            if not pattern_ok(p):
                malformed.append(f"{pat_file.stem}: {p}")
            elif p in patterns:
                meta["duplicate_patterns"] += 1
            else:
                patterns.append(p)
        tuples = []
        for no, r in jsonl_rows(tup_file):
            if not (isinstance(r.get("sub_label"), str) and isinstance(r.get("obj_label"), str)):
                raise GrowmergeError(f"{tup_file}:{no}: a tuple needs sub_label and obj_label text")
            if r["sub_label"].strip() and r["obj_label"].strip():
                tuples.append(r)
        objects = sorted({t["obj_label"] for t in tuples})
        if len(objects) < 2:
            meta["one_object"].append(tup_file.stem)
            continue
        if not patterns:
            continue
        meta["relations"] += 1
        meta["patterns"] += len(patterns)
        meta["tuples"] += len(tuples)
        rng = random.Random(f"{seed}:{lang}:{tup_file.stem}")
        for t in tuples:
            others = [o for o in objects if o != t["obj_label"]]
            wrongs = rng.sample(others, min(k, len(others)))
            for pi, p in enumerate(patterns):
                fill = p.replace("[X]", t["sub_label"])
                for w in wrongs:
                    out.append({"good": fill.replace("[Y]", t["obj_label"]), "bad": fill.replace("[Y]", w),
                                "phenomenon": tup_file.stem, "pattern": pi})
    if not out:
        raise GrowmergeError(f"{root}: no mParaRel pairs for {lang} (no relation with a well-formed pattern "
                             f"and two objects)")
    meta["malformed_patterns"] = len(malformed)
    meta["malformed"] = malformed
    return PairSet(f"mpararel/{lang}", out, False, 0, meta)
