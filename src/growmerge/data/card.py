"""The data card: a human-readable table of what was prepared (data/card.md)."""

from __future__ import annotations

import json
from pathlib import Path

from growmerge.errors import GrowmergeError


def render_card(manifest: dict) -> str:
    lines = ["# Data card", "",
             f"Tokenizer: `{manifest['tokenizer']}` (vocab {manifest['vocab_size']:,}, hash "
             f"`{manifest['tokenizer_hash']}`), sequence length {manifest['seq_len']}.", "",
             "| stream | lang | train docs | train chars | train tokens | eval docs | eval chars | eval tokens |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, s in manifest["streams"].items():
        tr, ev = s["train"], s["eval"]
        lines.append(f"| {name} | {s['lang']} | {tr['documents']:,} | {tr['characters']:,} | {tr['tokens']:,} "
                     f"| {ev['documents']:,} | {ev['characters']:,} | {ev['tokens']:,} |")
    lines += ["", "Evaluation sets (from evaluation groups only; never trained on):", "",
              "| lang | parallel pairs | held-out sentences |", "|---|---:|---:|"]
    ev = manifest["eval"]
    for lang in sorted(set(ev["pairs"]) | set(ev["sentences"])):
        lines.append(f"| {lang} | {ev['pairs'].get(lang, 0):,} | {ev['sentences'].get(lang, 0):,} |")
    if "mixtures" in manifest:
        lines += mixture_lines(manifest["mixtures"], manifest["budget"])
    return "\n".join(lines) + "\n"


def mixture_lines(mixtures: dict, budget: dict) -> list[str]:
    """Per training mixture: each stream's epochs and the tokens and characters they amount to."""
    lines = ["", "Training mixtures (one pass over each; epochs per language and stream):", "",
             "| mixture | item | stream | epochs | tokens | characters |", "|---|---|---|---:|---:|---:|"]
    for name, items in mixtures.items():
        for i in items:
            lines.append(f"| {name} | {i['name']} | {i['stream']} | {i['epochs']:.4g} | {i['tokens']:,.0f} "
                         f"| {i['characters']:,.0f} |")
        lines.append(f"| {name} | **total** | | | {sum(i['tokens'] for i in items):,.0f} "
                     f"| {sum(i['characters'] for i in items):,.0f} |")
    fixed = ", ".join(f"{k} {v:g}" for k, v in budget["fixed"].items()) or "none"
    lines += ["", f"UniMax budget: {budget['budget_chars']:,} characters, at most {budget['max_epochs']:g} epochs "
                  f"per language (fixed: {fixed}; leftover: {budget['leftover'] or 'none'}); the multilingual "
                  f"mixture spends {budget['spent_chars']:,.0f} characters of target-language text on it."]
    return lines


def read_manifest(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "data" / "manifest.json"
    if not path.is_file():
        raise GrowmergeError(f"{path} not found: run `growmerge data prepare CONFIG --run-dir {run_dir}` first")
    return json.loads(path.read_text(encoding="utf-8"))
