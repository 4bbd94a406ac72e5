"""Plain-text helpers shared by sources and splitting: normalisation, seeded hashing, sentences."""

from __future__ import annotations

import hashlib
import re
import unicodedata

SENTENCE_END = re.compile(r"(?<=[.!?؟])\s+")
# Markup and code characters: a "sentence" containing them is not natural prose.
NOT_PROSE = re.compile(r"[<>{}\[\]=_*`|\\#@$%^~:;/]")


def normalise(text: str) -> str:
    """The form used for deduplication and leakage checks: NFC, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_key(text: str) -> int:
    """64-bit key of normalised text (sets of these bound memory better than sets of strings)."""
    return int.from_bytes(hashlib.blake2b(normalise(text).encode(), digest_size=8).digest(), "little")


def word_count(text: str) -> int:
    return len(text.split())


def unit_hash(seed: int, salt: str, key: str) -> float:
    """A seeded, platform-independent number in [0, 1) for `key` (the same on every run)."""
    digest = hashlib.sha256(f"{seed}\x00{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


ABBREVIATION = re.compile(r"(\b\w\.){2,}$|\b(etc|vs|cf|ca|approx|Dr|Mr|Mrs|No|nr|dvs|jfr|ex|bl|osv|jne|nt)\.$", re.I)


def split_sentences(paragraph: str) -> list[str]:
    """Split at sentence-final punctuation, but not after abbreviations such as "e.g." or "dvs."."""
    out: list[str] = []
    for piece in SENTENCE_END.split(normalise(paragraph)):
        if out and ABBREVIATION.search(out[-1]):
            out[-1] += " " + piece
        else:
            out.append(piece)
    return out


def sentences(text: str, min_words: int = 4, max_words: int = 40) -> list[str]:
    """Single prose sentences of a document (for minimal-pair generation): complete, no markup."""
    out = []
    for par in paragraphs(text):
        for s in split_sentences(par):
            if (min_words <= word_count(s) <= max_words and s[-1] in ".!?؟" and not NOT_PROSE.search(s)
                    and not s[0].islower() and not s[0].isdigit()):
                out.append(s)
    return out
