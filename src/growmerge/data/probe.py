"""Fail fast: before anything is streamed, every source of every stream opens and yields its first
documents with the configured text field.

A missing local file, dataset, subset or text field is then one line naming the stream and the source,
at second one of the data stage, instead of after every stream before it has been read and split
(the atomic output would discard that work).
"""

from __future__ import annotations

from itertools import islice

from growmerge.data.spec import DataSpec
from growmerge.errors import EnvironmentFault, GrowmergeError

PROBE_DOCS = 3  # first documents read from each source


def describe(source) -> str:
    """A source as the user wrote it, short: `hf_dataset HuggingFaceTB/smollm-corpus (python-edu)`."""
    if source.kind == "files":
        return f"files {', '.join(map(str, source.paths))}"
    if source.kind == "hf_dataset":
        return f"hf_dataset {source.path}" + (f" ({source.name})" if source.name else "")
    root = getattr(source, "root", None) or getattr(source, "contents", None)
    return source.kind + (f" {root}" if root else "")


def probe_source(stream: str, index: int, source, lang: str) -> None:
    """Open one source and read its first documents; every failure names the stream and the source."""
    from growmerge.data.sources import documents

    where = f"stream {stream}, source {index + 1} ({describe(source)})"
    docs = documents(source, lang)
    try:
        first = list(islice(docs, PROBE_DOCS))
    except EnvironmentFault:
        raise
    except GrowmergeError as exc:
        raise GrowmergeError(f"{where}: {exc}") from None
    except (OSError, ValueError, KeyError) as exc:  # a reader's own error on a bad file
        raise GrowmergeError(f"{where}: cannot read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    finally:
        docs.close()
    if not first:
        raise GrowmergeError(f"{where}: yields no documents with text (check its paths and text_field)")


def probe_sources(spec: DataSpec, log=lambda msg: None) -> None:
    """Every source of every stream, in the order the YAML lists them."""
    for name, stream in spec.streams.items():
        for i, source in enumerate(stream.sources):
            probe_source(name, i, source, stream.lang)
    log(f"sources: all {sum(len(s.sources) for s in spec.streams.values())} open and yield text")
