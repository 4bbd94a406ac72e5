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
    """The mixtures of every training stage, from a prepared run directory (data/manifest.json)."""
    from growmerge.data.card import read_manifest

    run_dir = Path(run_dir)
    streams = read_manifest(run_dir)["streams"]
    return {name: Mixture(items=[MixtureItem(shard=run_dir / streams[s]["train"]["shard"], epochs=e, name=n)
                                 for s, e, n in items])
            for name, items in mixture_recipe(spec, {s: v["train"] for s, v in streams.items()}).items()}


def mixture_recipe(spec, stats: dict[str, dict]) -> dict[str, list[tuple[str, float, str]]]:
    """(stream, epochs, name) of every mixture, from each stream's training-split ``documents`` and
    ``characters`` (measured by the data stage, or assumed by a cost estimate).

    seed_code: code × seed_code_epochs; seed_mixed: code + the 80% English; base_en: the 20% English;
    adapt_<lang>: the language + English/code replay; multi: all languages (UniMax epochs) + replay.
    """
    from growmerge.names import CODE

    english = spec.english_streams()
    if len(english) != 2:
        raise GrowmergeError(f"the English stream must be split in two (seed, base), got {english}: "
                             "set split: {en_seed: 0.8, en_base: 0.2} on it")
    en_seed, en_base = english
    code = spec.stream_of(CODE)
    targets = {lang: spec.stream_of(lang) for lang in spec.languages}

    def replay(fraction: float) -> list[tuple[str, float, str]]:
        # "1% of the English": of all English, i.e. the same fraction of both English parts.
        items = [(s, spec.replay.english * fraction, f"{s}_replay") for s in (en_seed, en_base)]
        items.append((code, spec.replay.code * fraction, "code_replay"))
        return [i for i in items if i[1] > 0]

    docs = {lang: stats[s]["documents"] for lang, s in targets.items()}
    fractions = replay_fractions(docs, spec.replay.reference)
    recipe = {
        "seed_code": [(code, spec.seed_code_epochs, code)],
        "seed_mixed": [(code, 1.0, code), (en_seed, 1.0, en_seed)],
        "base_en": [(en_base, 1.0, en_base)],
    }
    for lang, s in targets.items():
        recipe[f"adapt_{lang}"] = [(s, 1.0, lang)] + replay(fractions[lang])
    chars = {lang: stats[s]["characters"] for lang, s in targets.items()}
    epochs = unimax(chars, spec.unimax.budget_chars or sum(chars.values()), spec.unimax.max_epochs)
    recipe["multi"] = [(s, epochs[lang], lang) for lang, s in targets.items()] + replay(sum(fractions.values()))
    return recipe
