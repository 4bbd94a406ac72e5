"""The paper's recipe as options: per-phase per-language epochs, UniMax with fixed languages and a
leftover language, English replay from a named stream; the data card shows them with the budget."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from growmerge.data.card import render_card
from growmerge.data.mixture import mixture_recipe, mixture_table, unimax
from growmerge.data.spec import DataSpec
from growmerge.errors import GrowmergeError

from conftest import shared_path
from test_data import corpus_spec, prepared  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]
PAPER_CODES = {"ekk": "et", "fao": "fo", "fas": "fa", "isl": "is", "swe": "sv"}


def paper_table() -> dict[str, dict[str, float]]:
    """Documents and tokens per target language, read from the table in ../shared/paper.md."""
    unit = {"K": 1e3, "M": 1e6, "B": 1e9}
    out = {}
    for line in shared_path("paper.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0] in PAPER_CODES:
            docs, tokens = (float(c[:-1]) * unit[c[-1]] for c in cells[2:])
            out[PAPER_CODES[cells[0]]] = {"documents": docs, "tokens": tokens}
    assert len(out) == 5, out
    return out


def paper_unimax() -> tuple[dict, dict[str, float]]:
    """The paper's UniMax as configs/paper.yaml sets it, on the paper's sizes. The paper gives tokens,
    not characters: characters = tokens × paper.yaml's cost.chars_per_token."""
    cfg = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    u, cpt = cfg["data"]["unimax"], cfg["cost"]["chars_per_token"]
    chars = {lang: s["tokens"] * cpt for lang, s in paper_table().items()}
    return u, unimax(chars, u["budget_chars"], u["max_epochs"], u.get("fixed"), u.get("leftover"))


def test_the_papers_unimax_pattern_from_its_sizes():
    u, epochs = paper_unimax()
    assert u["fixed"] == {"sv": 1, "fa": 1} and u["leftover"] == "et" and u["max_epochs"] == 6
    assert epochs["sv"] == epochs["fa"] == 1 and epochs["fo"] == epochs["is"] == 6
    assert epochs["et"] == pytest.approx(4.45, abs=0.05)  # the paper: ~4.45 (here 4.43)
    # Plain UniMax on the same sizes and budget spreads the rest over sv, fa and et alike
    # (1.02, 1.09, 4.01): the variant is what gives the paper's pattern.
    cpt = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())["cost"]["chars_per_token"]
    plain = unimax({k: v["tokens"] * cpt for k, v in paper_table().items()}, u["budget_chars"], 6)
    assert plain["sv"] > 1.02 and plain["fa"] > 1.08 and plain["et"] < 4.02


def test_paper_yaml_uses_the_recipe_and_its_adapt_epochs_match_unimax():
    cfg = yaml.safe_load((ROOT / "configs" / "paper.yaml").read_text())
    assert cfg["phases"]["adapt"]["epochs"] == {"fo": 6, "is": 6, "et": 4.45}
    assert cfg["data"]["replay"]["english_from"] == "en_seed"
    assert cfg["data"]["streams"]["code"]["sources"][0]["kind"] == "python_edu"
    assert [cfg["data"]["streams"][s]["dedup"] for s in ("sv", "et", "is", "fa", "fo", "en")] == [False] * 6


def test_unimax_variant_edges():
    sizes = {"a": 1.0, "b": 10.0, "c": 100.0}
    # Fixed languages are paid first; the leftover takes the rest even when it is not the largest.
    e = unimax(sizes, budget_chars=120, max_epochs=4, fixed={"c": 1}, leftover="b")
    assert e == pytest.approx({"a": 4, "b": 1.6, "c": 1})
    assert sum(e[k] * s for k, s in sizes.items()) == pytest.approx(120)
    # Without fixed/leftover it is plain UniMax.
    assert unimax(sizes, 60, 4, {}, None) == unimax(sizes, 60, 4)
    with pytest.raises(GrowmergeError, match="the whole budget"):
        unimax(sizes, budget_chars=100, max_epochs=4, fixed={"c": 1}, leftover="b")
    with pytest.raises(GrowmergeError, match="a would need more than max_epochs 4"):
        unimax(sizes, budget_chars=300, max_epochs=4, leftover="a")  # b 40, c 130, a would need 130


STATS = {"code": {"documents": 80, "characters": 2000, "tokens": 700},
         "en_seed": {"documents": 160, "characters": 8000, "tokens": 2000},
         "en_base": {"documents": 40, "characters": 2000, "tokens": 500},
         "sv": {"documents": 100, "characters": 5000, "tokens": 1500},
         "is": {"documents": 20, "characters": 400, "tokens": 150}}


def spec_with(tmp_path, **data) -> DataSpec:
    return DataSpec.model_validate({**corpus_spec(tmp_path), **data})


def as_dict(items) -> dict[str, float]:
    return {name: e for _, e, name in items}


def test_phase_epochs_scale_an_adaptation_and_replace_unimax_in_multi(tmp_path):
    spec = spec_with(tmp_path)
    plain = mixture_recipe(spec, STATS)
    r = mixture_recipe(spec, STATS, {"adapt": {"is": 6}, "multi": {"sv": 0.5}})
    # adapt_is: six epochs of Icelandic, its replay six times over (the same share of the mixture)
    assert as_dict(r["adapt_is"]) == pytest.approx({k: 6 * v for k, v in as_dict(plain["adapt_is"]).items()})
    assert r["adapt_sv"] == plain["adapt_sv"]
    assert as_dict(r["multi"])["sv"] == 0.5 and as_dict(r["multi"])["is"] == as_dict(plain["multi"])["is"]
    assert {k: v for k, v in r.items() if not k.startswith(("adapt", "multi"))} == \
        {k: v for k, v in plain.items() if not k.startswith(("adapt", "multi"))}


def test_english_replay_from_the_seed_stream_keeps_its_amount(tmp_path):
    spec = spec_with(tmp_path, replay={"english": 0.01, "code": 0.05, "english_from": "en_seed"})
    sv = mixture_recipe(spec, STATS)["adapt_sv"]
    assert [(s, n) for s, _, n in sv] == [("sv", "sv"), ("en_seed", "en_seed_replay"), ("code", "code_replay")]
    # 1% of all English (10,000 chars) = 100 chars, all from en_seed (8,000): 0.0125 epochs.
    assert as_dict(sv)["en_seed_replay"] == pytest.approx(0.0125)
    plain = as_dict(mixture_recipe(spec_with(tmp_path), STATS)["adapt_sv"])
    english = lambda d, st: sum(e * STATS[s]["characters"] for s, e, n in d if n.endswith("_replay") and s.startswith("en"))  # noqa: E731
    assert english(sv, STATS) == pytest.approx(english(mixture_recipe(spec_with(tmp_path), STATS)["adapt_sv"], STATS))
    assert plain["en_base_replay"] == 0.01


@pytest.mark.parametrize("data, message", [
    ({"replay": {"english_from": "sv"}}, "replay.english_from sv is not an English stream"),
    ({"unimax": {"fixed": {"de": 1}}}, "unimax: de is not one of languages"),
    ({"unimax": {"fixed": {"sv": 1}, "leftover": "sv"}}, "both fixed and the leftover"),
])
def test_recipe_options_are_checked_when_read(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        spec_with(tmp_path, **data)


def test_card_shows_epochs_tokens_characters_and_the_budget(tmp_path):
    spec = spec_with(tmp_path, unimax={"budget_chars": 6000, "max_epochs": 6, "fixed": {"sv": 1}, "leftover": "is"})
    table = mixture_table(spec, STATS, {"adapt": {"is": 6}})
    manifest = {"tokenizer": "tokenizer", "vocab_size": 400, "tokenizer_hash": "h", "seq_len": 32,
                "streams": {s: {"lang": "x", "train": v, "eval": v} for s, v in STATS.items()},
                "eval": {"pairs": {}, "sentences": {}}, **table}
    card = render_card(manifest)
    assert "| adapt_is | is | is | 6 | 900 | 2,400 |" in card
    assert "| multi | is | is | 2.5 | 375 | 1,000 |" in card  # the leftover: (6000 - 5000) / 400
    assert re.search(r"UniMax budget: 6,000 characters, at most 6 epochs .*fixed: sv 1; leftover: is.* spends 6,000", card)


def test_study_phase_epochs_reach_the_plan_and_change_only_those_stages(tmp_path):
    from growmerge.study.plan import build_plan
    from growmerge.study.spec import StudyConfig

    base = {"name": "r", "data": corpus_spec(tmp_path), "train": {"global_batch": 4}}
    plain = {s.id: s for s in build_plan(StudyConfig.model_validate(base))}
    cfg = StudyConfig.model_validate({**base, "phases": {"adapt": {"epochs": {"is": 6}, "lr": 1e-3}}})
    stages = {s.id: s for s in build_plan(cfg)}
    assert stages["1x_is"].epochs == {"is": 6} and stages["1x_sv"].epochs == {} and stages["1x_is"].spec.lr == 1e-3
    assert "epochs" not in plain["1x_sv"].identity() and "epochs" not in plain["data"].identity()
    assert stages["data"].epochs == {"adapt": {"is": 6}}
    assert stages["seed"].fingerprint == plain["seed"].fingerprint  # nothing upstream of data's card moved
    with pytest.raises(ValueError, match=r"phases.adapt.epochs: de is not one of data.languages"):
        StudyConfig.model_validate({**base, "phases": {"adapt": {"epochs": {"de": 2}}}})
    with pytest.raises(ValueError, match=r"per-language epochs exist only for phases adapt, multi"):
        StudyConfig.model_validate({**base, "phases": {"base": {"epochs": {"is": 2}}}})


def test_a_prepared_run_gives_stages_their_epochs_and_the_card_its_mixtures(prepared, tmp_path):
    from growmerge.study.stages import Context

    spec, run, manifest = prepared
    ctx = Context(root=run, data=spec, results=None)
    plain, six = ctx.mixture("adapt_is", "adapt", {}), ctx.mixture("adapt_is", "adapt", {"is": 6})
    assert [i.name for i in plain.items] == [i.name for i in six.items]
    assert [6 * i.epochs for i in plain.items] == pytest.approx([i.epochs for i in six.items])
    assert six.items[0].shard == run / "data/is/train.bin" and six.items[0].epochs == 6
    card = (run / "data" / "card.md").read_text()
    assert "| multi | is | is |" in card and "UniMax budget:" in card and manifest["budget"]["max_epochs"] == 6
    # The study's epochs reach the card through prepare_data (the data stage), without repacking.
    from growmerge.data.prepare import prepare_data

    bins = {p: p.stat().st_mtime_ns for p in (run / "data").rglob("*.bin")}
    again = prepare_data(spec, run, epochs={"adapt": {"is": 6}})
    assert next(i for i in again["mixtures"]["adapt_is"] if i["name"] == "is")["epochs"] == 6
    assert "| adapt_is | is | is | 6 |" in (run / "data" / "card.md").read_text()
    assert {p: p.stat().st_mtime_ns for p in (run / "data").rglob("*.bin")} == bins
    prepare_data(spec, run)  # back as the module's other tests expect it
