"""The `Inflector` interface and its registry; UniMorph TSV is the general backend.

An inflector analyses a word into readings ``(lemma, feats)`` — `feats` a frozenset of tags — and
generates the forms of a lemma with given feats. Each backend declares its feature `dimensions`
(dimension → mutually exclusive values); the pair generator changes exactly one value of one
dimension. Backends with an expensive per-call cost (an external process) override the batch
methods ``analyze_many`` / ``generate_many``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable, Iterable

from growmerge.errors import GrowmergeError

Reading = tuple[str, frozenset]


class Inflector:
    name = "base"
    dimensions: dict[str, tuple[str, ...]] = {}

    def analyze(self, word: str) -> list[Reading]:
        raise NotImplementedError

    def generate(self, lemma: str, feats: frozenset) -> list[str]:
        raise NotImplementedError

    def analyze_many(self, words: Iterable[str]) -> dict[str, list[Reading]]:
        return {w: self.analyze(w) for w in set(words)}

    def generate_many(self, requests: Iterable[Reading]) -> dict[Reading, list[str]]:
        return {r: self.generate(*r) for r in set(requests)}

    def dimension_of(self, value: str) -> str | None:
        if not hasattr(self, "_value_dim"):
            self._value_dim = {v: d for d, vs in self.dimensions.items() for v in vs}
        return self._value_dim.get(value)

    def one_feature_changes(self, feats: frozenset) -> list[tuple[str, str, str, frozenset]]:
        """Every (dimension, old, new, new_feats) that swaps exactly one value of one dimension."""
        out = []
        for old in sorted(feats):
            dim = self.dimension_of(old)
            if dim is None:
                continue
            for new in self.dimensions[dim]:
                if new != old and new not in feats:
                    out.append((dim, old, new, (feats - {old}) | {new}))
        return out


# Dimensions of the UniMorph schema that inflect (lexical ones such as a noun's gender never
# generate a different form of the same lemma, so listing them is harmless).
UNIMORPH_DIMENSIONS = {
    "Number": ("SG", "PL", "DU"),
    "Case": ("NOM", "ACC", "DAT", "GEN", "INS", "LOC", "VOC", "ABL", "ALL", "ESS", "TRANS", "COM",
             "PRIV", "IN+ESS", "IN+ALL", "IN+ABL", "AT+ESS", "AT+ALL", "AT+ABL", "TERM"),
    "Definiteness": ("DEF", "INDF"),
    "Tense": ("PRS", "PST", "FUT"),
    "Person": ("1", "2", "3"),
    "Mood": ("IND", "SBJV", "IMP", "COND"),
    "Voice": ("ACT", "MID", "PASS"),
    "Gender": ("MASC", "FEM", "NEUT"),
    "Comparison": ("CMPR", "SPRL"),
}


class TableInflector(Inflector):
    """An inflector backed by a full table of (lemma, feats) <-> form."""

    def __init__(self):
        self.readings: dict[str, set[Reading]] = {}
        self.forms: dict[Reading, set[str]] = {}

    def add(self, lemma: str, feats: Iterable[str], form: str) -> None:
        reading = (lemma, frozenset(feats))
        self.readings.setdefault(form, set()).add(reading)
        self.forms.setdefault(reading, set()).add(form)

    def analyze(self, word: str) -> list[Reading]:
        return sorted(self.readings.get(word, ()), key=_reading_key)

    def generate(self, lemma: str, feats: frozenset) -> list[str]:
        return sorted(self.forms.get((lemma, frozenset(feats)), ()))


class UniMorphInflector(TableInflector):
    """A UniMorph table (``lemma<TAB>form<TAB>FEATS``): any language with a table."""

    name = "unimorph"
    dimensions = UNIMORPH_DIMENSIONS

    def __init__(self, path: str | Path):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise GrowmergeError(f"{path}: no such UniMorph table (lemma<TAB>form<TAB>FEATS)")
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise GrowmergeError(f"{path}:{no}: expected lemma<TAB>form<TAB>FEATS")
            lemma, form, tags = parts
            # "NOM/ACC" style underspecified tags stay as one opaque tag (not a dimension value).
            self.add(lemma, (t for t in tags.split(";") if t), form)
        if not self.forms:
            raise GrowmergeError(f"{path}: empty UniMorph table")


def _reading_key(r: Reading):
    return (r[0], sorted(r[1]))


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------
def _lazy(module: str, cls: str, needs: str | None = None) -> Callable[[str | None], Inflector]:
    """A factory that imports its backend only when chosen: each one pulls in its own morphology
    package. `needs` names the argument the backend requires (``name:ARG``), if any."""

    def make(arg: str | None) -> Inflector:
        if needs and not arg:
            raise GrowmergeError(f"the {module} backend needs {needs}")
        backend = getattr(importlib.import_module(f"growmerge.evaluate.perturb.{module}"), cls)
        return backend(arg) if needs else backend()

    return make


def _unimorph(arg: str | None) -> Inflector:
    if not arg:
        raise GrowmergeError("the unimorph backend needs a table: --backend unimorph:PATH")
    return UniMorphInflector(arg)


INFLECTORS: dict[str, Callable[[str | None], Inflector]] = {
    "unimorph": _unimorph,
    "islenska": _lazy("icelandic", "IcelandicInflector"),
    "vabamorf": _lazy("estonian", "EstonianInflector"),
    "apertium": _lazy("apertium", "ApertiumInflector", "a language: --backend apertium:sv or apertium:da"),
    "persian": _lazy("persian", "PersianInflector"),
    "lemminflect": _lazy("english", "EnglishInflector"),
}
DEFAULT_BACKEND = {"is": "islenska", "et": "vabamorf", "sv": "apertium:sv", "da": "apertium:da",
                   "fa": "persian", "en": "lemminflect"}


def get_inflector(spec: str | None = None, lang: str | None = None) -> Inflector:
    """An inflector from ``name[:arg]`` (e.g. ``unimorph:/path/isl``, ``apertium:da``), or the
    default backend of `lang`."""
    if spec is None:
        if lang not in DEFAULT_BACKEND:
            raise GrowmergeError(f"no default inflector for language {lang!r}; pass --backend "
                                 f"({', '.join(INFLECTORS)}; e.g. unimorph:PATH)")
        spec = DEFAULT_BACKEND[lang]
    name, _, arg = spec.partition(":")
    if name not in INFLECTORS:
        raise GrowmergeError(f"unknown inflector {name!r}; choose one of {', '.join(INFLECTORS)}")
    return INFLECTORS[name](arg or None)
