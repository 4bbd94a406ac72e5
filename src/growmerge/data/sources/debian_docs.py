"""Prose and code that ship with Debian or the interpreter: GNOME help, Python docs, man pages, stdlib."""

from __future__ import annotations

import gzip
import re
import sysconfig
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

from growmerge.data.debian import package_root
from growmerge.data.text import normalise
from growmerge.errors import GrowmergeError

MALLARD = "{http://projectmallard.org/1.0/}"
GNOME_LANG = {"en": "C", "pt": "pt_BR"}


def mallard_paragraphs(path: Path) -> list[str]:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return []
    tags = {MALLARD + t for t in ("p", "title", "desc")}
    out = []
    for el in root.iter():
        if el.tag in tags:
            text = normalise("".join(el.itertext()))
            if text:
                out.append(text)
    return out


def gnome_user_docs(spec, lang: str) -> Iterator[dict]:
    """One document per Mallard page; paragraphs still in English (untranslated) are dropped."""
    help_root = package_root("gnome-user-docs") / "usr/share/help"
    code = GNOME_LANG.get(lang, lang)
    if not (help_root / code).is_dir():
        raise GrowmergeError(f"gnome-user-docs has no {code} translation (have: "
                             f"{', '.join(sorted(p.name for p in help_root.iterdir()))})")
    for page in sorted((help_root / code).glob("*/*.page")):
        rel = page.relative_to(help_root / code)
        english = set(mallard_paragraphs(help_root / "C" / rel)) if code != "C" else set()
        keep = [p for p in mallard_paragraphs(page) if p not in english]
        if keep:
            yield {"id": str(rel), "group": str(rel), "lang": lang, "text": "\n\n".join(keep),
                   "source": "gnome_user_docs"}


ROFF_TEXT_MACROS = re.compile(r"^\.(SH|SS|B|I|BR|IR|RB|RI|BI|IB|TP|IP|HP)\b\s*")
ROFF_ESCAPES = re.compile(r"\\f(\[[^\]]*\]|\(..|.)|\\\(..|\\\[[^\]]*\]|\\[&|^%]|\\s[-+]?\d")


def roff_to_text(roff: str) -> str:
    """Readable text of a man page: macro arguments kept, formatting escapes dropped."""
    lines, para = [], []
    for line in roff.splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue
        if line.startswith((".PP", ".LP", ".P ", ".SH", ".SS", ".TP", ".IP", ".sp")) or line == ".P":
            if para:
                lines.append(" ".join(para))
                para = []
        m = ROFF_TEXT_MACROS.match(line)
        if m and m.group(1) in ("SH", "SS"):  # a section heading is a paragraph of its own
            heading = ROFF_ESCAPES.sub("", line[m.end():].replace('"', "")).strip()
            if heading:
                lines.append(heading)
            continue
        if m:
            line = line[m.end():].replace('"', "")
        elif line.startswith((".", "'")):
            continue
        line = ROFF_ESCAPES.sub("", line).replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ")
        if line.strip():
            para.append(line.strip())
    if para:
        lines.append(" ".join(para))
    return "\n\n".join(lines)


def english_docs(spec, lang: str) -> Iterator[dict]:
    if lang != "en":
        raise GrowmergeError(f"english_docs is English only (stream lang is {lang})")
    for package in spec.packages:
        root = package_root(package)
        if package == "manpages":
            for path in sorted(root.glob("usr/share/man/man*/*.gz")):
                text = roff_to_text(gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace"))
                if text.strip():
                    yield {"id": f"man/{path.name}", "group": f"man/{path.name}", "lang": "en",
                           "text": text, "source": "manpages"}
        else:
            for path in sorted(root.glob("usr/share/doc/python3.11/html/_sources/**/*.rst.txt")):
                rel = str(path.relative_to(root))
                yield {"id": rel, "group": rel, "lang": "en", "source": package,
                       "text": path.read_text(encoding="utf-8", errors="replace")}


def python_code(spec, lang: str) -> Iterator[dict]:
    """Every .py file of the standard library (site-packages excluded: not the stdlib)."""
    root = Path(spec.root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise GrowmergeError(f"python_code root {root} is not a directory")
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if "site-packages" in rel.parts or "dist-packages" in rel.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few test files are deliberately mis-encoded
        if text.strip():
            yield {"id": str(rel), "group": str(rel), "lang": "code", "text": text, "source": "python_code"}
