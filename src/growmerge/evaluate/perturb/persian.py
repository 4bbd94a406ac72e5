"""Persian verbs by rule from hazm's stem list (``hazm/data/verbs.dat``: ``past#present``).

hazm pins an old numpy, so it is installed with ``--no-deps`` and we read only its data files.

Covered, affirmative and negative (ن-, نمی‌-): simple past (past stem + ending) and present
indicative (``می‌`` + present stem + ending), each × person × number, and the bare present
subjunctive used in compound verbs (``کنید``, ``نکنید``), × person × number; a change is one of
person, number or tense (past ↔ present indicative), never polarity. A present stem ending in ا/آ takes the glide ی.
Not covered: the ب- subjunctive, the future (خواه-), perfect and progressive tenses, nouns and adjectives.
The ``می`` prefix is recognised with a ZWNJ (``می‌روم``) or joined (``میروم``); the joined style is an
opaque feature, so a replacement keeps the original's spelling. Words that ``words.dat`` also lists
as a noun or adjective get a non-verb reading too, so ambiguous words are not perturbed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb.inflector import TableInflector

ZWNJ = "\u200c"
PAST_END = {("1", "SG"): "م", ("2", "SG"): "ی", ("3", "SG"): "", ("1", "PL"): "یم", ("2", "PL"): "ید", ("3", "PL"): "ند"}
PRES_END = PAST_END | {("3", "SG"): "د"}
VOWEL_END = ("ا", "آ")  # و-final stems are consonantal (رو: می‌روم); "گوی" is listed


def hazm_data() -> Path:
    spec = importlib.util.find_spec("hazm")
    if spec is None or not spec.submodule_search_locations:
        raise GrowmergeError("Persian needs hazm's data files (pip install --no-deps hazm==0.10.0)")
    return Path(spec.submodule_search_locations[0]) / "data"


def read_stems(path: Path) -> list[tuple[str, str]]:
    """(past, present) stems, one verb per stem spelling. Homographs would make every form of both
    verbs ambiguous, so for a shared past (or present) stem only the first-listed verb is kept
    (e.g. رفت#رو over رفت#روب, کرد#کن over کند#کن); "گو" beside "گوی" is the same stem without its
    glide and is dropped."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        past, _, pres = line.strip().partition("#")
        if past and pres:
            pairs.append((past, pres))
    listed = set(pairs)
    seen_past, seen_pres, out = set(), set(), []
    for past, pres in pairs:
        if (past, pres + "ی") in listed or past in seen_past or pres in seen_pres:
            continue
        seen_past.add(past)
        seen_pres.add(pres)
        out.append((past, pres))
    return out


class PersianInflector(TableInflector):
    name = "persian"
    dimensions = {"Tense": ("PRS", "PST"), "Person": ("1", "2", "3"), "Number": ("SG", "PL")}

    def __init__(self, data_dir: str | Path | None = None):
        super().__init__()
        data = Path(data_dir) if data_dir else hazm_data()
        for past, pres in read_stems(data / "verbs.dat"):
            self._add_verb(past, pres)
        self._add_other_readings(data / "words.dat")

    def _add_other_readings(self, path: Path) -> None:
        """Verb forms that words.dat also lists as a noun, adjective, ... get that reading too."""
        if not path.is_file():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split("\t")
            if len(parts) == 3 and parts[0] in self.readings:
                for pos in set(parts[2].split(",")) - {"V"}:
                    self.add(f"{parts[0]}|{pos}", {pos}, parts[0])

    def _add_verb(self, past: str, pres: str) -> None:
        lemma = f"{past}#{pres}"
        stem = pres + "ی" if pres.endswith(VOWEL_END) else pres
        # Polarity is an opaque tag (never changed): negative forms still change person, number, tense.
        for polarity, neg in (("POS", ""), ("NEG", "ن")):
            for (person, number), end in PAST_END.items():
                self.add(lemma, {"V", "IND", "PST", polarity, person, number}, _negate(neg, past) + end)
            for (person, number), end in PRES_END.items():
                feats = {"V", "IND", "PRS", polarity, person, number}
                self.add(lemma, feats, neg + "می" + ZWNJ + stem + end)
                self.add(lemma, feats | {"joined"}, neg + "می" + stem + end)
                self.add(lemma, {"V", "SBJV", polarity, person, number}, _negate(neg, stem) + end)


def _negate(neg: str, stem: str) -> str:
    """ن- before a stem; before آ it is written نیا (آمد → نیامد)."""
    if neg and stem.startswith("آ"):
        return neg + "یا" + stem[1:]
    return neg + stem
