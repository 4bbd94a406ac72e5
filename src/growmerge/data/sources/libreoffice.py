"""LibreOffice help pages (aligned by page and paragraph id) and UI catalogs (.mo), from Debian.

Help: every paragraph carries the same ``id="par_id…"``/``id="hd_id…"`` in every language, so a
(page, id) key aligns English with the translation exactly. A document is one page (paragraphs
separated by blank lines), its group is the page path, identical across languages, so a page is
evaluation data in every language at once.
"""

from __future__ import annotations

import gettext
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator

from growmerge.data.debian import package_root
from growmerge.data.text import normalise, word_count
from growmerge.errors import GrowmergeError

HELP_LANG = {"en": "en-US", "nb": "nb", "nn": "nn", "pt": "pt", "zh": "zh-CN"}
PARAGRAPH_ID = re.compile(r"(par|hd)_id\w*")
VOID = {"br", "img", "input", "meta", "link", "hr", "wbr", "source", "col", "area", "base", "embed"}
PLACEHOLDER = re.compile(r"%\w|%\d|\{\w*\}|\$\w+|\$\(|&\w+;|%\{|\\n")


class HelpPageParser(HTMLParser):
    """Collect the text of each `par_id`/`hd_id` element inside the DisplayArea.

    Inline "switch" spans hold one variant per platform or application, all `hidden`; the page's
    script shows one. We keep the unclassed default variant and drop the classed ones (MAC, CALC...),
    so a paragraph reads as it does on Linux in the generic help.
    """

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.display_depth = None  # depth of the DisplayArea div, once inside it
        self.hidden_depth = None  # depth of a dropped variant, while inside one
        self.current: tuple[str, int] | None = None  # (paragraph id, depth)
        self.parts: list[str] = []
        self.paragraphs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            if tag == "br" and self.current is not None:
                self.parts.append(" ")
            return
        self.depth += 1
        a = dict(attrs)
        if tag == "div" and a.get("id") == "DisplayArea":
            self.display_depth = self.depth
        if self.display_depth is None:
            return
        if self.hidden_depth is None and "hidden" in a and a.get("class"):
            self.hidden_depth = self.depth
        pid = a.get("id") or ""
        if self.current is None and PARAGRAPH_ID.fullmatch(pid):
            self.current, self.parts = (pid, self.depth), []

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if self.hidden_depth == self.depth:
            self.hidden_depth = None
        if self.current is not None and self.current[1] == self.depth:
            text = " ".join("".join(self.parts).split())
            if text:
                self.paragraphs.setdefault(self.current[0], text)
            self.current = None
        if self.display_depth == self.depth:
            self.display_depth = None
        self.depth -= 1

    def handle_data(self, data):
        if self.current is not None and self.hidden_depth is None:
            self.parts.append(data)


def help_paragraphs(html: str) -> dict[str, str]:
    parser = HelpPageParser()
    parser.feed(html)
    parser.close()
    return parser.paragraphs


def help_dir(lang: str) -> Path:
    code = HELP_LANG.get(lang, lang)
    root = package_root(f"libreoffice-help-{code.lower()}") / "usr/share/libreoffice/help" / code
    if not root.is_dir():
        raise GrowmergeError(f"libreoffice-help-{code.lower()} has no help/{code} directory")
    return root


def help_pages(lang: str) -> Iterator[tuple[str, dict[str, str]]]:
    root = help_dir(lang)
    for path in sorted(root.glob("text/**/*.html")):
        yield str(path.relative_to(root)), help_paragraphs(path.read_text(encoding="utf-8", errors="replace"))


def libreoffice_help(spec, lang: str) -> Iterator[dict]:
    """One document per page; target-language pages carry their (English, target) paragraph pairs."""
    english = {} if lang == "en" else dict(help_pages("en"))
    for page, paragraphs in help_pages(lang):
        if lang == "en":
            keep, pairs = list(paragraphs.values()), []
        else:
            en_pars = english.get(page, {})
            # Untranslated paragraphs stay English in the target pages: they are not target text.
            keep = [t for k, t in paragraphs.items() if normalise(t) != normalise(en_pars.get(k, ""))]
            pairs = [[f"{page}#{k}", en_pars[k], t] for k, t in paragraphs.items()
                     if k in en_pars and normalise(t) != normalise(en_pars[k])
                     and word_count(en_pars[k]) >= spec.min_words]
        if keep:
            yield {"id": page, "group": page, "lang": lang, "text": "\n\n".join(keep),
                   "source": "libreoffice_help", "pairs": pairs}


def catalog_pairs(mo_file: Path) -> list[tuple[str, str]]:
    """(English, translation) pairs of a .mo catalog (the empty msgid holds the header)."""
    with open(mo_file, "rb") as fh:
        catalog = gettext.GNUTranslations(fh)
    out = []
    for key, value in catalog._catalog.items():  # the public API only translates; we need the table
        if isinstance(key, tuple):  # plural forms: (msgid, n)
            if key[1] != 0:
                continue
            key = key[0]
        msgid = key.split("\x04", 1)[-1]  # drop the msgctxt
        out.append((msgid, value))
    return out


def usable_pair(en: str, tgt: str, min_words: int) -> bool:
    return (bool(en.strip()) and bool(tgt.strip()) and normalise(en) != normalise(tgt)
            and word_count(en) >= min_words and not PLACEHOLDER.search(en) and not PLACEHOLDER.search(tgt))


def libreoffice_ui(spec, lang: str) -> Iterator[dict]:
    """UI strings grouped into documents of ~`doc_chars` per catalog; each carries its pairs."""
    root = package_root(f"libreoffice-l10n-{lang}") / "usr/lib/libreoffice/program/resource"
    files = sorted(root.glob("*/LC_MESSAGES/*.mo"))
    if not files:
        raise GrowmergeError(f"libreoffice-l10n-{lang} has no .mo catalogs under {root}")
    for mo in files:
        pairs = sorted({(" ".join(e.split()), " ".join(t.split())) for e, t in catalog_pairs(mo)
                        if usable_pair(e, t, spec.min_words)})
        chunk: list[tuple[str, str]] = []
        for i, pair in enumerate(pairs):
            chunk.append(pair)
            if sum(len(t) for _, t in chunk) >= spec.doc_chars or i == len(pairs) - 1:
                doc_id = f"{mo.stem}/{i}"
                yield {"id": doc_id, "group": doc_id, "lang": lang, "source": "libreoffice_ui",
                       "text": "\n\n".join(t for _, t in chunk),
                       "pairs": [[f"{doc_id}#{j}", e, t] for j, (e, t) in enumerate(chunk)]}
                chunk = []
