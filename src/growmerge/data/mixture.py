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


def unimax(sizes_chars: dict[str, float], budget_chars: float, max_epochs: float,
           fixed: dict[str, float] | None = None, leftover: str | None = None) -> dict[str, float]:
    """UniMax (Chung et al. 2023): epochs per language for a character budget.

    Languages are visited from the smallest up; each gets an equal share of what is left of the
    budget, capped at `max_epochs` passes over its data; what a capped language cannot use is spread
    uniformly over the larger ones.

    The paper's variant: `fixed` languages get exactly their epochs (Swedish and Persian 1), paid
    from the budget first, and the `leftover` language is served last and takes all that is left
    (Estonian, ~4.45), within `max_epochs`.
    """
    fixed = fixed or {}
    if any(s <= 0 for s in sizes_chars.values()):
        raise GrowmergeError(f"unimax: every language needs data (sizes: {sizes_chars})")
    if budget_chars <= 0:
        raise GrowmergeError(f"unimax budget must be positive, got {budget_chars}")
    total_cap = max_epochs * sum(sizes_chars[lang] for lang in sizes_chars if lang not in fixed) \
        + sum(e * sizes_chars[lang] for lang, e in fixed.items())
    if budget_chars > total_cap * (1 + 1e-9):
        raise GrowmergeError(f"unimax budget {budget_chars:,.0f} chars cannot be met: all data × max_epochs is "
                             f"only {total_cap:,.0f}; lower unimax.budget_chars or raise unimax.max_epochs")
    epochs = dict(fixed)
    left = float(budget_chars) - sum(e * sizes_chars[lang] for lang, e in fixed.items())
    if left <= 0:
        raise GrowmergeError(f"unimax: the fixed languages ({', '.join(fixed)}) use {budget_chars - left:,.0f} "
                             f"chars, the whole budget of {budget_chars:,.0f}; raise unimax.budget_chars")
    order = sorted((lang for lang in sizes_chars if lang not in fixed and lang != leftover), key=sizes_chars.get)
    order += [leftover] if leftover is not None else []
    for i, lang in enumerate(order):
        share = left if lang == leftover else left / (len(order) - i)
        use = min(share, max_epochs * sizes_chars[lang])
        epochs[lang] = use / sizes_chars[lang]
        left -= use
    if leftover is not None and left > 1e-9 * budget_chars:
        raise GrowmergeError(f"unimax: {leftover} would need more than max_epochs {max_epochs:g} to take the "
                             f"{left + epochs[leftover] * sizes_chars[leftover]:,.0f} chars left; lower "
                             "unimax.budget_chars or raise unimax.max_epochs")
    return {lang: epochs[lang] for lang in sizes_chars}


PHASES_WITH_EPOCHS = {"adapt": "adapt_<lang>", "multi": "multi"}


def check_phase_epochs(epochs: dict, languages: list[str], where: str = "phases") -> dict[str, dict[str, float]]:
    """`phases.<phase>.epochs: {lang: epochs}`, validated: only adapt and multi have per-language
    data, and every key is a target language."""
    out = {}
    for phase, per_lang in epochs.items():
        if phase not in PHASES_WITH_EPOCHS:
            raise GrowmergeError(f"{where}.{phase}.epochs: per-language epochs exist only for phases "
                                 f"{', '.join(PHASES_WITH_EPOCHS)} (seed_code: data.seed_code_epochs)")
        if not isinstance(per_lang, dict):
            raise GrowmergeError(f"{where}.{phase}.epochs: expected {{language: epochs}}, e.g. {{fo: 6}}")
        for lang, e in per_lang.items():
            if lang not in languages:
                raise GrowmergeError(f"{where}.{phase}.epochs: {lang} is not one of data.languages "
                                     f"({', '.join(languages)})")
            if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 < e < float("inf"):
                raise GrowmergeError(f"{where}.{phase}.epochs.{lang}: must be a positive number, got {e!r}")
        out[phase] = {lang: float(e) for lang, e in per_lang.items()}
    return out


def phase_epochs_of(phases: dict | None, languages: list[str]) -> dict[str, dict[str, float]]:
    """The per-language epochs of a study YAML's raw `phases:` section."""
    if not isinstance(phases, dict):
        return {}  # the study YAML's own check reports a malformed phases section
    return check_phase_epochs({p: v["epochs"] for p, v in phases.items() if isinstance(v, dict) and "epochs" in v},
                              languages)


def build_mixtures(run_dir: Path, spec, epochs: dict[str, dict[str, float]] | None = None) -> dict[str, Mixture]:
    """The mixtures of every training stage, from a prepared run directory (data/manifest.json)."""
    from growmerge.data.card import read_manifest

    run_dir = Path(run_dir)
    streams = read_manifest(run_dir)["streams"]
    return {name: Mixture(items=[MixtureItem(shard=run_dir / streams[s]["train"]["shard"], epochs=e, name=n)
                                 for s, e, n in items])
            for name, items in mixture_recipe(spec, {s: v["train"] for s, v in streams.items()}, epochs).items()}


def mixture_recipe(spec, stats: dict[str, dict], epochs: dict[str, dict[str, float]] | None = None
                   ) -> dict[str, list[tuple[str, float, str]]]:
    """(stream, epochs, name) of every mixture, from each stream's training-split ``documents`` and
    ``characters`` (measured by the data stage, or assumed by a cost estimate).

    seed_code: code × seed_code_epochs; seed_mixed: code + the 80% English; base_en: the 20% English;
    adapt_<lang>: the language + English/code replay; multi: all languages (UniMax epochs) + replay.
    `epochs` (``phases.<phase>.epochs``): adapt_<lang> runs that many epochs over its language and
    its replay alike (the replay stays the share the document-count rule gives it); in multi, a
    language's epochs replace its UniMax epochs.
    """
    from growmerge.names import CODE

    epochs = epochs or {}
    english = spec.english_streams()
    if len(english) != 2:
        raise GrowmergeError(f"the English stream must be split in two (seed, base), got {english}: "
                             "set split: {en_seed: 0.8, en_base: 0.2} on it")
    en_seed, en_base = english
    code = spec.stream_of(CODE)
    targets = {lang: spec.stream_of(lang) for lang in spec.languages}

    def replay(fraction: float) -> list[tuple[str, float, str]]:
        # "1% of the English": of all English, i.e. the same fraction of both English parts, or,
        # drawn from one part, as many characters from that part alone.
        source = spec.replay.english_from
        if source is None:
            items = [(s, spec.replay.english * fraction, f"{s}_replay") for s in (en_seed, en_base)]
        else:
            share = sum(stats[s]["characters"] for s in english) / stats[source]["characters"]
            items = [(source, spec.replay.english * fraction * share, f"{source}_replay")]
        items.append((code, spec.replay.code * fraction, "code_replay"))
        return [i for i in items if i[1] > 0]

    docs = {lang: stats[s]["documents"] for lang, s in targets.items()}
    fractions = replay_fractions(docs, spec.replay.reference)
    recipe = {
        "seed_code": [(code, spec.seed_code_epochs, code)],
        "seed_mixed": [(code, 1.0, code), (en_seed, 1.0, en_seed)],
        "base_en": [(en_base, 1.0, en_base)],
    }
    adapt = epochs.get("adapt", {})
    for lang, s in targets.items():
        e = adapt.get(lang, 1.0)
        recipe[f"adapt_{lang}"] = [(s, e, lang)] + [(r, re * e, n) for r, re, n in replay(fractions[lang])]
    multi = {**unimax_epochs(spec, stats), **epochs.get("multi", {})}
    recipe["multi"] = [(s, multi[lang], lang) for lang, s in targets.items()] + replay(sum(fractions.values()))
    return recipe


def unimax_epochs(spec, stats: dict[str, dict]) -> dict[str, float]:
    """The multilingual mixture's epochs per target language under the study's UniMax settings."""
    chars = {lang: stats[spec.stream_of(lang)]["characters"] for lang in spec.languages}
    u = spec.unimax
    return unimax(chars, u.budget_chars or sum(chars.values()), u.max_epochs, u.fixed, u.leftover)


def mixture_table(spec, stats: dict[str, dict], epochs: dict[str, dict[str, float]] | None = None) -> dict:
    """What the data card shows of the mixtures: per mixture and item the stream, epochs, training
    tokens and characters; and the UniMax budget with what the multilingual mixture spends of it."""
    recipe = mixture_recipe(spec, stats, epochs)
    table = {name: [{"name": n, "stream": s, "epochs": e, "tokens": stats[s].get("tokens", 0) * e,
                     "characters": stats[s]["characters"] * e} for s, e, n in items]
             for name, items in recipe.items()}
    targets = set(spec.languages)
    chars = {lang: stats[spec.stream_of(lang)]["characters"] for lang in spec.languages}
    budget = {"budget_chars": spec.unimax.budget_chars or sum(chars.values()), "max_epochs": spec.unimax.max_epochs,
              "fixed": dict(spec.unimax.fixed), "leftover": spec.unimax.leftover,
              "spent_chars": sum(i["characters"] for i in table["multi"] if i["name"] in targets)}
    return {"mixtures": table, "budget": budget}
