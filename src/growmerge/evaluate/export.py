"""Export a minimal-pair set as an lm-eval task (YAML + JSONL data), so any model can be scored on it
with ``lm_eval --include_path OUT_DIR --tasks NAME``.

The task is lm-eval's BLiMP/MultiBLiMP recipe: empty context, choices ``[good, bad]``, target 0,
metric ``acc``; the target delimiter is " " for sets scored with a leading space (BLiMP) and "" for
the others (MultiBLiMP, generated LA and FK sets), the same text growmerge scores.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from growmerge.errors import GrowmergeError


def task_name(set_file: Path) -> str:
    stem = set_file.name.split(".")[0] if set_file.is_file() else set_file.name
    return "growmerge_" + (re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_") or "pairs")


def export_lm_eval(set_file: str | Path, out_dir: str | Path, name: str | None = None) -> dict:
    """Write ``OUT_DIR/NAME.yaml`` and ``OUT_DIR/NAME.jsonl``; returns {task, yaml, data, pairs}.
    The YAML names the data file by its absolute path (lm-eval resolves it from the working directory)."""
    from growmerge.artifacts import write_text_atomic
    from growmerge.evaluate.pairs import read_pairs

    set_file, out_dir = Path(set_file), Path(out_dir)
    ps = read_pairs(set_file)
    name = name or task_name(set_file)
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", name):
        raise GrowmergeError(f"task name {name!r}: use letters, digits, _ and - (starting with a letter)")
    if out_dir.exists() and not out_dir.is_dir():
        raise GrowmergeError(f"{out_dir}: exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GrowmergeError(f"{out_dir}: cannot create ({exc.strerror})") from None
    data = (out_dir / f"{name}.jsonl").resolve()
    lines = [json.dumps({"good": p["good"], "bad": p["bad"], "phenomenon": str(p.get("phenomenon", "all"))},
                        ensure_ascii=False) for p in ps.pairs]
    write_text_atomic(data, "\n".join(lines) + "\n")
    delimiter = " " if ps.space_prefix else ""
    yaml_text = (
        f"# lm-eval task exported by growmerge from {set_file.resolve()} ({len(ps.pairs)} pairs)\n"
        f"task: {name}\n"
        f"dataset_path: json\n"
        f"dataset_kwargs:\n"
        f"  data_files:\n"
        f"    test: {json.dumps(str(data))}\n"
        f"output_type: multiple_choice\n"
        f"test_split: test\n"
        f"doc_to_text: \"\"\n"
        f"target_delimiter: {json.dumps(delimiter)}\n"
        f"doc_to_target: 0\n"
        f"doc_to_choice: \"{{{{[good, bad]}}}}\"\n"
        f"num_fewshot: 0\n"
        f"metric_list:\n"
        f"  - metric: acc\n"
        f"    aggregation: mean\n"
        f"    higher_is_better: true\n"
        f"metadata:\n"
        f"  version: 1.0\n"
    )
    yaml_path = out_dir / f"{name}.yaml"
    write_text_atomic(yaml_path, yaml_text)
    return {"task": name, "yaml": yaml_path, "data": data, "pairs": len(ps.pairs), "space_prefix": ps.space_prefix}
