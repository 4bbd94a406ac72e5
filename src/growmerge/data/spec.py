"""The `data:` section of a study YAML: which text, which tokenizer, how it is split and mixed.

Streams are named text collections (``code``, ``en``, ``sv``...); each is read from one or more
sources (``growmerge.data.sources``), deduplicated, split by group into train/eval, capped, and packed.
A stream with ``split`` becomes several streams (the paper's English 80/20: ``en_seed`` / ``en_base``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from growmerge.config import Strict, parse, read_yaml
from growmerge.errors import GrowmergeError
from growmerge.names import CODE, ENGLISH


class LibreOfficeHelp(Strict):
    """Debian libreoffice-help-<lang>: pages aligned with English by (page, paragraph id)."""

    kind: Literal["libreoffice_help"]
    min_words: int = Field(4, ge=1)  # pairs shorter than this (in English words) are not evaluation pairs


class LibreOfficeUI(Strict):
    """Debian libreoffice-l10n-<lang>: gettext catalogs (English msgid -> translated msgstr)."""

    kind: Literal["libreoffice_ui"]
    min_words: int = Field(4, ge=1)  # strings with fewer English words are dropped (menu labels)
    doc_chars: int = Field(500, ge=1)  # consecutive strings are grouped into documents about this long


class GnomeUserDocs(Strict):
    """Debian gnome-user-docs: Mallard help pages (translated paragraphs only)."""

    kind: Literal["gnome_user_docs"]


class PythonCode(Strict):
    """The Python standard library of the running interpreter (or `root`)."""

    kind: Literal["python_code"]
    root: Path | None = None


class EnglishDocs(Strict):
    """English prose from Debian documentation packages (reStructuredText sources, man pages)."""

    kind: Literal["english_docs"]
    packages: list[Literal["python3.11-doc", "manpages"]] = Field(
        default_factory=lambda: ["python3.11-doc", "manpages"], min_length=1)


class HFDataset(Strict):
    """Any `datasets.load_dataset(path, name, data_files=..., split=..., streaming=...)`."""

    kind: Literal["hf_dataset"]
    path: str
    name: str | None = None
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    split: str = "train"
    streaming: bool = True
    text_field: str = "text"
    id_field: str | None = None
    group_field: str | None = None  # default: each document is its own group
    max_docs: int | None = Field(None, ge=1)


class PythonEdu(Strict):
    """smollm-corpus python-edu: rows of blob ids (streamed like `hf_dataset`) joined with their file
    contents, downloaded beforehand into `contents` as ``<blob_id>`` or ``<blob_id>.gz`` (README,
    "Python-Edu"). Any other directory of .py files is `python_code` with `root`."""

    kind: Literal["python_edu"]
    contents: Path  # directory of the downloaded blobs
    path: str = "HuggingFaceTB/smollm-corpus"
    name: str | None = "python-edu"
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    split: str = "train"
    streaming: bool = True
    id_field: str = "blob_id"
    group_field: str | None = "repo_name"  # files of one repository stay on one side of the split
    missing: Literal["error", "skip"] = "error"  # a blob id without downloaded contents
    max_docs: int | None = Field(None, ge=1)


class Files(Strict):
    """Local .txt (one document per file), .jsonl or .parquet (one document per row)."""

    kind: Literal["files"]
    paths: list[Path] = Field(min_length=1)
    text_field: str = "text"
    group_field: str | None = None


SourceSpec = Annotated[
    Union[LibreOfficeHelp, LibreOfficeUI, GnomeUserDocs, PythonCode, EnglishDocs, HFDataset, PythonEdu, Files],
    Field(discriminator="kind"),
]


class StreamSpec(Strict):
    lang: str  # ISO 639-1 code, or "code"
    sources: list[SourceSpec] = Field(min_length=1)
    max_chars: int | None = Field(None, ge=1)  # cap on training characters (a quick demo)
    eval_fraction: float | None = Field(None, gt=0, lt=1)  # overrides DataSpec.eval_fraction
    split: dict[str, float] | None = None  # e.g. {en_seed: 0.8, en_base: 0.2}
    # Drop repeated paragraphs (code: files) within each split. Off for corpora their makers already
    # deduplicated (FineWeb-*): memory then stays flat however large the stream. Text that is
    # evaluated is kept out of training either way.
    dedup: bool = Field(True, exclude_if=lambda v: v)
    # Bound dedup's memory to this many MB (a Bloom filter; rare false positives drop a distinct
    # paragraph). Default: exact, a 64-bit key per distinct training paragraph in memory.
    dedup_mb: int | None = Field(None, ge=1, exclude_if=lambda v: v is None)
    # Read a stream whose one source is a `files` group of many files as this many groups of
    # consecutive files, each by its own process (or Slurm array task): the split then reads them in
    # file order, so the bytes are those of one reader (growmerge.data.groups).
    file_groups: int | None = Field(None, ge=2, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _file_groups_need_files(self):
        if self.file_groups is None:
            return self
        if len(self.sources) != 1 or self.sources[0].kind not in ("files", "hf_dataset"):
            raise ValueError("file_groups needs exactly one source, of kind `files` or `hf_dataset`")
        source = self.sources[0]
        if source.kind == "hf_dataset" and not (isinstance(source.data_files, (str, list)) and source.id_field
                                                 and source.max_docs is None):
            # Row numbers (the default ids) and a cap on rows are not known to a group read alone.
            raise ValueError("file_groups on an hf_dataset needs data_files (a list or a glob), id_field "
                             "and no max_docs")
        return self

    @model_validator(mode="after")
    def _split_sums_to_one(self):
        if self.split is not None and (abs(sum(self.split.values()) - 1) > 1e-9 or min(self.split.values()) <= 0):
            raise ValueError("split fractions must be positive and sum to 1")
        return self


class TokenizerSpec(Strict):
    vocab_size: int = Field(8192, ge=260)  # trained vocab, and the most tokens a loaded tokenizer may have
    pretrained: str | None = None  # an HF tokenizer name or local path instead of training one
    sample_chars: int = Field(1_000_000, ge=1)  # training sample per stream (balanced across streams)


class ReplaySpec(Strict):
    """Paper: the reference (most documents) language replays 1% of English and 5% of code."""

    english: float = Field(0.01, ge=0, le=1)
    code: float = Field(0.05, ge=0, le=1)
    reference: str | None = None  # default: the target language with most documents
    # Draw the English replay from this English stream only (paper: the seed's pretraining data,
    # en_seed), as much of it as `english` of all English; default: both English parts alike.
    # (exclude_if: a default leaves the dump, so fingerprints of existing studies do not move.)
    english_from: str | None = Field(None, exclude_if=lambda v: v is None)


class UnimaxSpec(Strict):
    budget_chars: int | None = Field(None, ge=1)  # default: all target training characters once
    max_epochs: float = Field(6.0, gt=0)
    # The paper's variant: these languages get exactly these epochs (sv, fa: 1) ...
    fixed: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict, exclude_if=lambda v: not v)
    # ... and this one is served last and takes what is left of the budget (et: ~4.45).
    leftover: str | None = Field(None, exclude_if=lambda v: v is None)


class DataSpec(Strict):
    languages: list[str] = Field(min_length=1)  # target languages; each needs a stream
    streams: dict[str, StreamSpec]
    tokenizer: TokenizerSpec = TokenizerSpec()
    seq_len: int = Field(256, ge=8)
    eval_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0
    workers: int = Field(2, ge=1)  # tokenization processes
    seed_code_epochs: float = Field(2.0, gt=0)  # paper: the seed model sees code twice first
    replay: ReplaySpec = ReplaySpec()
    unimax: UnimaxSpec = UnimaxSpec()

    @model_validator(mode="after")
    def _check_streams(self):
        for name, stream in self.streams.items():
            check_language(stream.lang, f"streams.{name}.lang")
        for lang in self.languages:
            check_language(lang, "languages")
            if lang in (CODE, ENGLISH):
                raise ValueError(f"languages lists target languages; {lang} is always included as its own stream")
        langs = {s.lang for s in self.streams.values()}
        missing = [x for x in [CODE, ENGLISH, *self.languages] if x not in langs]
        if missing:
            raise ValueError(f"no stream for {', '.join(missing)} (add streams with lang: {missing[0]})")
        for lang in (CODE, ENGLISH, *self.languages):
            if sum(s.lang == lang for s in self.streams.values()) > 1:
                raise ValueError(f"more than one stream with lang {lang}")
        if self.replay.reference is not None and self.replay.reference not in self.languages:
            raise ValueError(f"replay.reference {self.replay.reference} is not one of languages")
        for lang in [*self.unimax.fixed, *filter(None, [self.unimax.leftover])]:
            if lang not in self.languages:
                raise ValueError(f"unimax: {lang} is not one of languages ({', '.join(self.languages)})")
        if self.unimax.leftover in self.unimax.fixed:
            raise ValueError(f"unimax: {self.unimax.leftover} cannot be both fixed and the leftover language")
        english = self.english_streams()
        if self.replay.english_from is not None and self.replay.english_from not in english:
            raise ValueError(f"replay.english_from {self.replay.english_from} is not an English stream "
                             f"(one of {', '.join(english)})")
        return self

    # -- derived names ------------------------------------------------------------------------
    def stream_of(self, lang: str) -> str:
        return next(name for name, s in self.streams.items() if s.lang == lang)

    def output_streams(self) -> dict[str, str]:
        """Packed stream name -> language (a split stream becomes its parts)."""
        out = {}
        for name, s in self.streams.items():
            for part in (s.split or {name: 1.0}):
                out[part] = s.lang
        return out

    def english_streams(self) -> list[str]:
        return [n for n, lang in self.output_streams().items() if lang == ENGLISH]

    def fingerprint(self, *fields: str) -> str:
        """Hash of the given fields (all if none): what a cached stage depends on. How a stream is
        read (`file_groups`) is left out: it does not change a byte."""
        dump = self.model_dump(mode="json", include=set(fields) or None,
                               exclude={"streams": {"__all__": {"file_groups"}}})
        return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]


def check_language(code: str, where: str) -> None:
    if code == CODE:
        return
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(code)
    except (UnknownLocaleError, ValueError):
        raise ValueError(f"unknown language code {code!r} at {where} (use an ISO 639-1 code such as sv, or 'code')")


def load_data_spec(path: str | Path) -> DataSpec:
    """Read only the `data:` key of a study YAML (the other top-level keys belong to other stages)."""
    raw = read_yaml(path)
    if "data" not in raw or not isinstance(raw["data"], dict):
        raise GrowmergeError(f"{path}: no `data:` section (see configs/demo.yaml)")
    return parse(DataSpec, raw["data"], f"{path}: data")
