"""Mixtures: which shards a training run reads, and how many epochs of each.

A mixture is the trainer's whole view of the data. ``epochs`` may be fractional (0.3 = a seeded 30%
sample of the shard's sequences; 4.45 = four full passes plus a 45% sample). The trainer derives a
deterministic order from its seed; see ``growmerge.train``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from growmerge.config import Strict
from growmerge.errors import GrowmergeError


class MixtureItem(Strict):
    shard: Path  # a packed .bin (growmerge.data.shards)
    epochs: float = Field(1.0, gt=0)
    name: str | None = None  # stream name for the ledger (e.g. "sv", "en_replay", "code_replay")


class Mixture(Strict):
    items: list[MixtureItem] = Field(min_length=1)


# ---------------------------------------------------------------------------------------------
# The paper's rules: replay scaled by document count, and UniMax for the joint multilingual runs
# ---------------------------------------------------------------------------------------------
def replay_fractions(doc_counts: dict[str, float], reference: str | None = None) -> dict[str, float]:
    """Each language's replay as a fraction of the reference language's (default: most documents).

    Linear in document count: with the paper's counts, Persian 0.988, Estonian 0.171, Icelandic 0.051.
    """
    if not doc_counts:
        raise GrowmergeError("replay_fractions: no languages given")
    reference = reference or max(doc_counts, key=doc_counts.get)
    if reference not in doc_counts or doc_counts[reference] <= 0:
        raise GrowmergeError(f"replay reference {reference!r} has no documents (languages: {', '.join(doc_counts)})")
    return {lang: n / doc_counts[reference] for lang, n in doc_counts.items()}


def unimax(sizes_chars: dict[str, float], budget_chars: float, max_epochs: float) -> dict[str, float]:
    """UniMax (Chung et al. 2023): epochs per language for a character budget.

    Languages are visited from the smallest up; each gets an equal share of what is left of the
    budget, capped at `max_epochs` passes over its data; what a capped language cannot use is spread
    uniformly over the larger ones.
    """
    if any(s <= 0 for s in sizes_chars.values()):
        raise GrowmergeError(f"unimax: every language needs data (sizes: {sizes_chars})")
    if budget_chars <= 0:
        raise GrowmergeError(f"unimax budget must be positive, got {budget_chars}")
    total_cap = max_epochs * sum(sizes_chars.values())
    if budget_chars > total_cap * (1 + 1e-9):
        raise GrowmergeError(f"unimax budget {budget_chars:,.0f} chars cannot be met: all data × max_epochs is "
                             f"only {total_cap:,.0f}; lower unimax.budget_chars or raise unimax.max_epochs")
    left, epochs = float(budget_chars), {}
    order = sorted(sizes_chars, key=sizes_chars.get)
    for i, lang in enumerate(order):
        share = left / (len(order) - i)
        use = min(share, max_epochs * sizes_chars[lang])
        epochs[lang] = use / sizes_chars[lang]
        left -= use
    return epochs


def build_mixtures(run_dir: Path, spec) -> dict[str, Mixture]:
    """The mixtures of every training stage, from a prepared run directory (data/manifest.json).

    seed_code: code × seed_code_epochs; seed_mixed: code + the 80% English; base_en: the 20% English;
    adapt_<lang>: the language + English/code replay; multi: all languages (UniMax epochs) + replay.
    """
    from growmerge.data.card import read_manifest
    from growmerge.data.spec import CODE

    run_dir = Path(run_dir)
    streams = read_manifest(run_dir)["streams"]
    english = spec.english_streams()
    if len(english) != 2:
        raise GrowmergeError(f"the English stream must be split in two (seed, base), got {english}: "
                             "set split: {en_seed: 0.8, en_base: 0.2} on it")
    en_seed, en_base = english
    code = spec.stream_of(CODE)
    targets = {lang: spec.stream_of(lang) for lang in spec.languages}

    def item(stream: str, epochs: float, name: str | None = None) -> MixtureItem:
        return MixtureItem(shard=run_dir / streams[stream]["train"]["shard"], epochs=epochs, name=name or stream)

    def replay(fraction: float) -> list[MixtureItem]:
        # "1% of the English": of all English, i.e. the same fraction of both English parts.
        items = [item(s, spec.replay.english * fraction, f"{s}_replay") for s in (en_seed, en_base)]
        items.append(item(code, spec.replay.code * fraction, "code_replay"))
        return [i for i in items if i.epochs > 0]

    docs = {lang: streams[s]["train"]["documents"] for lang, s in targets.items()}
    fractions = replay_fractions(docs, spec.replay.reference)
    mixtures = {
        "seed_code": Mixture(items=[item(code, spec.seed_code_epochs)]),
        "seed_mixed": Mixture(items=[item(code, 1.0), item(en_seed, 1.0)]),
        "base_en": Mixture(items=[item(en_base, 1.0)]),
    }
    for lang, s in targets.items():
        mixtures[f"adapt_{lang}"] = Mixture(items=[item(s, 1.0, lang)] + replay(fractions[lang]))
    chars = {lang: streams[s]["train"]["characters"] for lang, s in targets.items()}
    epochs = unimax(chars, spec.unimax.budget_chars or sum(chars.values()), spec.unimax.max_epochs)
    mixtures["multi"] = Mixture(items=[item(s, epochs[lang], lang) for lang, s in targets.items()]
                                + replay(sum(fractions.values())))
    return mixtures
