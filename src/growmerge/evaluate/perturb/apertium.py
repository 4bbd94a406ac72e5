"""Swedish and Danish through Apertium's transducers (`lt-proc`, Debian `apertium-swe-dan`).

A plain user cannot ``apt-get install``, so when `lt-proc` and the language data are not installed
system-wide we ``apt-get download`` the three Debian packages (apertium-swe-dan, lttoolbox,
liblttoolbox3) and ``dpkg-deb -x`` them into ``$GROWMERGE_CACHE/apertium/root`` (default
``~/.cache/growmerge``), then run the extracted binary with ``LD_LIBRARY_PATH``.

In the swe-dan pair, ``swe-dan.automorf`` analyses Swedish and ``dan-swe.autogen`` generates Swedish
(and the other way round for Danish). Whole batches go through one ``lt-proc`` process.

Covered: nouns (number, definiteness, nominative/genitive), adjectives (gender, number,
definiteness, degree), verbs (infinitive, present, past, supine, participle; active/passive);
determiners, pronouns and the rest are analysed with all their tags (the rules read them). A form
is generated from a tag sequence seen for its lemma with the changed tags swapped in (Apertium's
generator wants the tags in its own order). Apertium leaves the nominative unmarked; we add a
``nom`` tag when analysing and drop it when generating so that case is a dimension like any other. Compound and multiword analyses are ignored.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from growmerge.errors import GrowmergeError
from growmerge.evaluate.perturb.inflector import Inflector, Reading

PACKAGES = ("apertium-swe-dan", "lttoolbox", "liblttoolbox3")
PAIR_DIR = "usr/share/apertium/apertium-swe-dan"
FILES = {"sv": ("swe-dan.automorf.bin", "dan-swe.autogen.bin"), "da": ("dan-swe.automorf.bin", "swe-dan.autogen.bin")}
SKIP_TAGS = {"cmp", "compound-R", "compound-only-L", "cmp-split", "guio", "cmp-ref"}
ANALYSIS = re.compile(r"^([^<]+)((?:<[^>]+>)+)$")


def _cache_root() -> Path:
    from growmerge.evaluate.parity import default_cache_dir

    return default_cache_dir() / "apertium" / "root"


def fetch_apertium(root: Path) -> None:
    """Download and unpack the Debian packages into `root` (no root privileges needed)."""
    debs = root.parent / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=debs, check=True, capture_output=True, timeout=300)
        tmp = root.with_name(f"root.tmp-{os.getpid()}")
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True, capture_output=True)
        os.replace(tmp, root)
    except (OSError, subprocess.SubprocessError) as exc:
        raise GrowmergeError(f"Apertium is not installed and could not be fetched ({exc}); install the Debian "
                             f"packages {' '.join(PACKAGES)} or unpack them into {root}") from None


def locate(lang: str) -> tuple[list[str], dict, Path]:
    """(lt-proc command, environment, data directory), fetching the packages on first use."""
    system = Path("/") / PAIR_DIR
    if shutil.which("lt-proc") and (system / FILES[lang][0]).is_file():
        return [shutil.which("lt-proc")], dict(os.environ), system
    root = _cache_root()
    if not (root / "usr/bin/lt-proc").is_file():
        fetch_apertium(root)
    libs = [str(p) for p in (root / "usr/lib").glob("*-linux-gnu")]
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(libs + [os.environ.get("LD_LIBRARY_PATH", "")]))
    return [str(root / "usr/bin/lt-proc")], env, root / PAIR_DIR


class ApertiumInflector(Inflector):
    name = "apertium"
    dimensions = {"Number": ("sg", "pl", "sp"), "Definiteness": ("def", "ind"), "Case": ("nom", "gen"),
                  "Gender": ("ut", "nt", "un", "fn"), "Degree": ("pst", "comp", "sup"),
                  "VForm": ("inf", "pres", "past", "supn", "pp", "imp"), "Voice": ("actv", "pasv")}

    def __init__(self, lang: str):
        if lang not in FILES:
            raise GrowmergeError(f"apertium backend covers {', '.join(FILES)}, not {lang!r}")
        self.lang = lang
        self.cmd, self.env, data = locate(lang)
        self.analyser, self.generator = (str(data / f) for f in FILES[lang])
        self._readings: dict[str, list[Reading]] = {}
        self._templates: dict[str, set[tuple[str, ...]]] = {}  # lemma -> tag sequences seen

    def _run(self, args: list[str], lines: list[str]) -> list[str]:
        text = "".join(line.replace("\n", " ") + "\n" for line in lines)
        proc = subprocess.run(self.cmd + args, input=text, capture_output=True, text=True, env=self.env)
        if proc.returncode != 0:
            raise GrowmergeError(f"lt-proc failed: {proc.stderr.strip()[:200]}")
        out = proc.stdout.split("\n")
        return out[:len(lines)] if len(out) >= len(lines) else out + [""] * (len(lines) - len(out))

    def analyze_many(self, words) -> dict[str, list[Reading]]:
        todo = sorted({w for w in words if w not in self._readings and w.strip()})
        escaped = [re.sub(r"([\^$@/<>\[\]\\{}*~#+|])", r"\\\1", w) for w in todo]  # stream format
        for w, line in zip(todo, self._run([self.analyser], escaped)) if todo else ():
            self._readings[w] = self._parse(line)
        return {w: self._readings.get(w, []) for w in words}

    def _parse(self, line: str) -> list[Reading]:
        units = re.findall(r"\^(.*?)\$", line)
        if len(units) != 1:
            return []  # a word the analyser splits (or does not know) is not perturbed
        out = set()
        for a in units[0].split("/")[1:]:
            m = ANALYSIS.match(a)
            if not m or "+" in a or a.startswith("*"):
                continue
            tags = tuple(re.findall(r"<([^>]+)>", m[2]))
            if SKIP_TAGS & set(tags):
                continue
            if tags[0] == "n" and "gen" not in tags:
                tags = tags + ("nom",)
            lemma = f"{m[1]}|{tags[0]}"
            self._templates.setdefault(lemma, set()).add(tags)
            out.add((lemma, frozenset(tags)))
        return sorted(out, key=lambda r: (r[0], sorted(r[1])))

    def analyze(self, word: str) -> list[Reading]:
        return self.analyze_many([word])[word]

    def _sequence(self, lemma: str, feats: frozenset) -> tuple[str, ...] | None:
        """The tag order for `feats`: a seen sequence of the lemma with its tags swapped, dimension by
        dimension, for those of `feats`; for a verb without such a sequence, the verb order."""
        for seq in sorted(self._templates.get(lemma, ())):
            if len(seq) != len(feats):
                continue
            added = feats - set(seq)
            by_dim = {self.dimension_of(t): t for t in added}
            if len(by_dim) != len(added) or None in by_dim:
                continue
            out = tuple(t if t in feats else by_dim.get(self.dimension_of(t), t) for t in seq)
            if set(out) == feats:
                return out
        pos = lemma.split("|")[1] if "|" in lemma else ""
        if pos.startswith("v") and pos in feats:
            rest = sorted(feats - {pos}, key=lambda t: (self.dimension_of(t) != "VForm", t))
            if all(self.dimension_of(t) in ("VForm", "Voice") for t in rest):
                return (pos, *rest)
        return None

    def generate_many(self, requests) -> dict[Reading, list[str]]:
        requests = sorted(set(requests), key=lambda r: (r[0], sorted(r[1])))
        queries, keys = [], []
        for lemma, feats in requests:
            seq = self._sequence(lemma, feats)
            if seq is not None:
                tags = "".join(f"<{t}>" for t in seq if t != "nom")
                queries.append(f"^{lemma.split('|')[0]}{tags}$")
                keys.append((lemma, feats))
        out: dict[Reading, list[str]] = {r: [] for r in requests}
        for key, line in zip(keys, self._run(["-g", self.generator], queries) if queries else ()):
            form = line.strip()
            if form and not re.search(r"[#*@\\~<>^$/\s]", form):  # unknown or post-generation marks
                out[key] = [form]
        return out

    def generate(self, lemma: str, feats: frozenset) -> list[str]:
        return self.generate_many([(lemma, feats)])[(lemma, feats)]
