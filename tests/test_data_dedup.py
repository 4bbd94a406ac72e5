"""Dedup is a per-stream option: on (exact, or bounded in memory by `dedup_mb`) or off (FineWeb-*)."""

from __future__ import annotations

import json
import random

from growmerge.data.spec import DataSpec
from growmerge.data.splits import BoundedSeen, SplitState, split_stream
from growmerge.data.text import unit_hash

from test_data import corpus_spec, make_corpus


def split_en(tmp_path, name: str, **stream) -> list[str]:
    """The English training texts of the local corpus, split with the given stream options."""
    spec = corpus_spec(tmp_path)
    spec["streams"]["en"] = {**spec["streams"]["en"], **stream}
    spec = DataSpec.model_validate(spec)
    out = tmp_path / name
    out.mkdir()
    split_stream("en", spec.streams["en"], spec, out, SplitState())
    return [json.loads(line)["text"] for part in ("en_seed", "en_base")
            for line in (out / f"{part}.train.jsonl").read_text().splitlines()]


FOOTER = "Every page of this site ends with this footer paragraph."


def test_dedup_on_bounded_and_off(tmp_path):
    make_corpus(tmp_path)
    # Training pages that share a footer (a footer on an evaluation page would keep it out of training).
    train_pages = [f"f{i}" for i in range(80) if unit_hash(0, "eval", f"f{i}") >= 0.2]
    with open(tmp_path / "en.jsonl", "a", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"text": f"Page {g} has its own first paragraph.\n\n{FOOTER}", "page": g}) + "\n"
                      for g in train_pages)
    exact = split_en(tmp_path, "exact")
    bounded = split_en(tmp_path, "bounded", dedup_mb=1)
    off = split_en(tmp_path, "off", dedup=False)
    assert bounded == exact  # a 1 MB filter holds these few hundred paragraphs without a false positive
    pars = lambda texts: [p for t in texts for p in t.split("\n\n")]  # noqa: E731
    assert len(set(pars(exact))) == len(pars(exact))  # no paragraph twice
    # Without dedup the footer stays on every training page; with it, once.
    assert pars(exact).count(FOOTER) == 1 and pars(off).count(FOOTER) > 20
    assert set(pars(off)) == set(pars(exact))


def test_bounded_seen_has_fixed_size_and_no_false_negative():
    rng = random.Random(0)
    seen = BoundedSeen(1)
    keys = [rng.getrandbits(64) for _ in range(50_000)]
    for k in keys:
        seen.add(k)
    assert len(seen.bits) == 1 << 20 and all(k in seen for k in keys)
    others = [rng.getrandbits(64) for _ in range(50_000)]
    # Expected false positives: 50,000 × (1 - e^(-7 × 50,000 / 2^23))^7 ≈ 1e-5
    assert sum(k in seen for k in others) == 0
