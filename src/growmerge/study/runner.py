"""Run a study plan: every stage in order, skipping what is already done.

A stage is done when ``<run>/stages/<id>.json`` holds its current fingerprint; the marker is written
only after the stage's outputs are complete (every output is itself written atomically), so a run
killed at any point resumes at the first unfinished stage. Training stages additionally resume from
their last checkpoint; evaluation stages skip the (model, language) cells already in results.sqlite.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from growmerge.artifacts import write_json_atomic
from growmerge.errors import GrowmergeError
from growmerge.study.plan import ENGLISH, Stage, build_plan
from growmerge.study.results import FINAL_STEP, Results
from growmerge.study.spec import StudyConfig


@dataclass
class Context:
    cfg: StudyConfig
    root: Path
    results: Results
    say: Callable[[str], None] = print
    interactive: bool = False  # show training progress bars (only when one stage runs at a time on a tty)
    _mixtures: dict | None = field(default=None, repr=False)

    def model_dir(self, name: str) -> Path:
        return self.root / "models" / name

    @property
    def mixtures(self) -> dict:
        if self._mixtures is None:
            from growmerge.data.mixture import build_mixtures

            self._mixtures = build_mixtures(self.root, self.cfg.data)
        return self._mixtures

    def eval_file(self, task: str, lang: str) -> Path:
        return self.root / "eval" / task / f"{lang}.jsonl"


# ---------------------------------------------------------------------------------------------
# Stage markers
# ---------------------------------------------------------------------------------------------
def marker(root: Path, stage: Stage) -> Path:
    return root / "stages" / f"{stage.id}.json"


def is_done(root: Path, stage: Stage) -> bool:
    path = marker(root, stage)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text())["fingerprint"] == stage.fingerprint
    except (json.JSONDecodeError, KeyError):
        return False


def mark_done(root: Path, stage: Stage, seconds: float) -> None:
    path = marker(root, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"fingerprint": stage.fingerprint, "seconds": round(seconds, 2),
                             "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})


# ---------------------------------------------------------------------------------------------
# Executors, one per stage kind
# ---------------------------------------------------------------------------------------------
def run_data(ctx: Context, stage: Stage) -> None:
    from growmerge.data.prepare import prepare_data

    prepare_data(ctx.cfg.data, ctx.root, log=ctx.say)


def run_pairs(ctx: Context, stage: Stage) -> None:
    """Fixed evaluation sets for every model, as JSONL under eval/: IP (the first N parallel pairs;
    for English, English paired with itself), LA (minimal pairs generated from held-out sentences),
    FK (a seeded sample of facts)."""
    from growmerge.evaluate.pairs import read_fk
    from growmerge.evaluate.perturb.sets import generate_file, write_jsonl

    ev, seed = ctx.cfg.eval, stage.params["seed"]
    held_out = ctx.root / "data" / "eval"
    for lang in stage.params["languages"]:
        if ev.ip:
            parallel = ev.ip_files.get(lang) or held_out / "parallel" / f"{lang}.jsonl"
            write_jsonl(read_jsonl(parallel)[: ev.max_ip_pairs], ctx.eval_file("ip", lang))
        sentences = held_out / "sentences" / f"{lang}.txt"
        if ev.la and sentences.is_file():
            try:
                report = generate_file(lang, sentences, ctx.eval_file("la", lang), stage.params["n"], seed)
                ctx.say(f"LA {lang}: {report['pairs']} pairs ({report['backend']}; {len(report['features'])} features)")
            except GrowmergeError as exc:  # one language without a morphology backend must not stop the study
                ctx.say(f"LA {lang}: no generated set ({exc})")
        if ev.fk:
            try:
                fk = read_fk(ev.fk_source, lang, seed).pairs
            except GrowmergeError as exc:
                ctx.say(f"FK {lang}: no set ({exc})")
                continue
            # A fixed seeded sample: every model is scored on the same facts.
            write_jsonl(random.Random(seed).sample(fk, min(len(fk), ev.fk_pairs)), ctx.eval_file("fk", lang))


def read_jsonl(path: Path) -> list[dict]:
    from growmerge.evaluate.pairs import jsonl_rows

    if not path.is_file():
        raise GrowmergeError(f"{path}: missing (the data stage writes it)")
    return [row for _, row in jsonl_rows(path)]


def run_reference(ctx: Context, stage: Stage) -> None:
    from growmerge.convert import convert_gguf, smollm2_gguf

    out = ctx.model_dir(stage.id)
    source = stage.params["source"]
    if source == "smollm2":
        convert_gguf(smollm2_gguf(), out, force=True)
    elif source.endswith(".gguf"):
        convert_gguf(source, out, force=True)
    else:
        out = Path(source)  # an HF dir or hub id is evaluated where it is
    register(ctx, stage.id, out, kind="reference", setup="smollm2" if source == "smollm2" else None)


def run_clone(ctx: Context, stage: Stage) -> None:
    from growmerge.grow.hyperclone import clone_dir

    p = stage.params
    out = clone_dir(ctx.model_dir(p["src"]), ctx.model_dir(stage.id), p["factor"], snr_db=p["snr_db"],
                    seed=p["seed"], force=True)
    register(ctx, stage.id, out, kind="clone", scale=p["scale"], parent=p["src"])


def run_train(ctx: Context, stage: Stage) -> None:
    from growmerge.train.spec import TrainSpec

    p = stage.params
    init = str(ctx.model_dir(p["init"])) if ctx.model_dir(p["init"]).is_dir() else p["init"]
    mixture = ctx.mixtures[p["mixture"]]
    spec = TrainSpec.model_validate(p["spec"])
    meta = {"kind": p["kind"], "setup": p["setup"], "languages": p["languages"], "scale": p["scale"],
            "study": ctx.cfg.name, "stage": stage.id}
    out = ctx.model_dir(stage.id)
    if ctx.cfg.nproc > 1:
        train_distributed(ctx, stage, init, mixture, spec, meta, out)
    else:
        from growmerge.train.loop import train

        train(init, mixture, spec, out, tokenizer_dir=ctx.root / "tokenizer", meta=meta, resume=True,
              force=False, progress=ctx.interactive)
    register(ctx, stage.id, out, kind=p["kind"], setup=p["setup"], scale=p["scale"], parent=p["init"])


def train_distributed(ctx: Context, stage: Stage, init, mixture, spec, meta, out: Path) -> None:
    """The same training entry point under torchrun (DDP; FSDP2 when the spec says fsdp)."""
    import yaml

    job = ctx.root / "jobs" / f"{stage.id}.yaml"
    job.parent.mkdir(parents=True, exist_ok=True)
    body = {**spec.model_dump(mode="json"), "init": str(Path(init).resolve()) if Path(init).is_dir() else init,
            "mixture": [{"shard": str(Path(i.shard).resolve()), "epochs": i.epochs, "name": i.name} for i in mixture.items],
            "out": str(out.resolve()), "tokenizer": str((ctx.root / "tokenizer").resolve()), "meta": meta}
    job.write_text(yaml.safe_dump(body, sort_keys=False))
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={ctx.cfg.nproc}",
           "-m", "growmerge.cli", "train", str(job), "--resume"]
    if subprocess.run(cmd).returncode != 0:
        raise GrowmergeError(f"training stage {stage.id} failed under torchrun (see the output above)")


def register(ctx: Context, name: str, path: Path, kind: str, setup: str | None = None, scale: str | None = None,
             parent: str | None = None) -> None:
    """Record a model, its checkpoints (with cumulative FLOPs) and its training curve."""
    from growmerge.study.results import record_model_dir

    record_model_dir(ctx.results, name, path, kind=kind, setup=setup, scale=scale, parent=parent)


def run_merge(ctx: Context, stage: Stage) -> None:
    from growmerge.merge.grid import merge_grid

    p = stage.params
    params = {**p["parameters"], "dtype": p["dtype"]}
    models = {lang: ctx.model_dir(m) for lang, m in p["models"].items()}
    out_root = ctx.root / "merges" / p["scale"]
    outputs = merge_grid(models, ctx.model_dir(p["base"]), p["methods"], p["sizes"], out_root, params,
                         compat=p["compat"])
    for out in outputs:
        method, langs = out.parent.name, out.name.split("+")
        ctx.results.add_merge(merge_name(p["scale"], method, langs), method, p["scale"], langs, out)


def merge_name(scale: str, method: str, langs: list[str]) -> str:
    return f"merge/{scale}/{method}/{'+'.join(sorted(langs))}"


def eval_files(ctx: Context, lang: str, max_pairs: int | None) -> dict:
    """The evaluation files of one language (trimmed copies when a model gets fewer pairs)."""
    ev = ctx.cfg.eval
    files = {"ip_file": ctx.eval_file("ip", lang) if ev.ip else None,
             "la_files": [ctx.eval_file("la", lang)] if ev.la else [],
             "fk_files": [ctx.eval_file("fk", lang)] if ev.fk else []}
    files["la_files"] = [f for f in files["la_files"] if f.is_file()] + list(ev.extra_la.get(lang, []))
    files["fk_files"] = [f for f in files["fk_files"] if f.is_file()] + list(ev.extra_fk.get(lang, []))
    if files["ip_file"] is not None and not files["ip_file"].is_file():
        files["ip_file"] = None
    if max_pairs:
        from growmerge.evaluate.perturb.sets import write_jsonl

        def trim(f: Path) -> Path:
            small = ctx.root / "eval" / f"first-{max_pairs}" / f.parent.name / f.name
            if not small.is_file():
                write_jsonl(read_jsonl(f)[:max_pairs], small)
            return small

        files = {"ip_file": files["ip_file"] and trim(files["ip_file"]),
                 "la_files": [trim(f) for f in files["la_files"]], "fk_files": [trim(f) for f in files["fk_files"]]}
    return files


def evaluate(ctx: Context, name: str, path: Path, langs: list[str], reference: str, step: int = FINAL_STEP,
             max_pairs: int | None = None, scorer=None):
    """Score one model (or checkpoint) on each language; cells already in the results are skipped."""
    from growmerge.evaluate.run import evaluate_model
    from growmerge.evaluate.scorer import Scorer

    todo = [lang for lang in langs if not ctx.results.has_scores(name, step, lang, "la")
            and not ctx.results.has_scores(name, step, lang, "ip")]
    if not todo:
        return scorer
    scorer = scorer or Scorer.from_dir(path)
    for lang in todo:
        files = eval_files(ctx, lang, max_pairs)
        if files["ip_file"] is None and not files["la_files"] and not files["fk_files"]:
            continue
        rows = evaluate_model(path, lang, reference=ctx.model_dir(reference), cache_dir=ctx.root / "cache",
                              scorer=scorer, seed=ctx.cfg.seed, **files)
        ctx.results.add_scores([{**r, "model": name, "step": step} for r in rows])
    return scorer


def run_eval(ctx: Context, stage: Stage) -> None:
    p = stage.params
    path = Path(ctx.results.models(name=p["model"])[0]["path"])
    evaluate(ctx, p["model"], path, p["languages"], p["reference"], max_pairs=p["max_pairs"])


def run_eval_merges(ctx: Context, stage: Stage) -> None:
    p = stage.params
    for m in ctx.results.merges():
        if m["scale"] != p["scale"]:
            continue
        langs = json.loads(m["languages"]) if isinstance(m["languages"], str) else m["languages"]
        evaluate(ctx, m["name"], Path(m["path"]), [*langs, *([ENGLISH] if p["english"] else [])], p["reference"],
                 max_pairs=p["eval"]["merge_max_pairs"])


def run_matched(ctx: Context, stage: Stage) -> None:
    """Score the intermediate checkpoints that the compute-matched comparison needs (and only those)."""
    from growmerge.study.matching import compute_matched_pairs

    pairs, excluded = compute_matched_pairs(ctx.results, ctx.cfg.setups)
    for x in excluded:
        ctx.say(f"compute-matched: excluded {x.lang} {x.setup_a} vs {x.setup_b}: {x.reason}")
    for pair in pairs:
        ckpts = {c["step"]: c for c in ctx.results.checkpoints(pair.costlier_model)}
        final = max(ckpts) if ckpts else None
        if pair.costlier_step in (final, FINAL_STEP) or pair.costlier_step not in ckpts:
            continue  # the final model is scored by its own eval stage
        ckpt = ckpts[pair.costlier_step]
        evaluate(ctx, pair.costlier_model, Path(ckpt["path"]), [pair.lang, ENGLISH], stage.params["reference"],
                 step=pair.costlier_step)


def run_vectors(ctx: Context, stage: Stage) -> None:
    from growmerge.merge.vectors import vector_similarity, write_heatmap

    p = stage.params
    result = vector_similarity(ctx.model_dir(p["base"]), {lang: ctx.model_dir(m) for lang, m in p["models"].items()})
    out = ctx.root / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / f"vectors_{p['scale']}.json", result)
    write_heatmap(result, out / f"vectors_{p['scale']}.png")


def run_report(ctx: Context, stage: Stage) -> None:
    from growmerge.report import build_report

    path = build_report(ctx.root, ctx.results)
    ctx.say(f"report: {path}")


EXECUTORS: dict[str, Callable[[Context, Stage], None]] = {
    "data": run_data, "pairs": run_pairs, "reference": run_reference, "clone": run_clone, "train": run_train,
    "merge": run_merge, "eval": run_eval, "eval_merges": run_eval_merges, "matched": run_matched,
    "vectors": run_vectors, "report": run_report,
}


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
@contextmanager
def stage_log(root: Path, stage: Stage, echo: Callable[[str], None]):
    """Messages of a stage go to <run>/logs/<id>.log and, shortened, to the terminal."""
    path = root / "logs" / f"{stage.id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        def say(msg: str) -> None:
            fh.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
            fh.flush()
            echo(f"    {msg}")
        yield say


def run_stage(ctx: Context, stage: Stage, head: str, echo: Callable[[str], None], t_study: float) -> None:
    echo(f"{head}: running")
    t0 = time.perf_counter()
    with stage_log(ctx.root, stage, echo) as say:
        ctx.say = say
        EXECUTORS[stage.kind](ctx, stage)
    mark_done(ctx.root, stage, time.perf_counter() - t0)
    echo(f"{head}: finished in {time.perf_counter() - t0:.1f} s (study {time.perf_counter() - t_study:.0f} s)")


def _worker(cfg_json: str, stage_id: str, head: str, threads: int, t_study: float) -> None:
    """One stage in a worker process (parallel runs): its own threads, its own results connection."""
    import torch

    torch.set_num_threads(threads)
    cfg = StudyConfig.model_validate_json(cfg_json)
    stage = next(s for s in build_plan(cfg) if s.id == stage_id)

    def echo(msg: str) -> None:
        print(msg, flush=True)

    with Results(cfg.root / "results.sqlite") as results:
        run_stage(Context(cfg, cfg.root, results, say=echo, interactive=False), stage, head, echo, t_study)


def run_study(cfg: StudyConfig, only: list[str] | None = None, echo: Callable[[str], None] = print,
              jobs: int | None = None) -> list[Stage]:
    """Run every stage that is not done yet (`jobs` at a time, as dependencies allow); returns the plan."""
    jobs = jobs or cfg.jobs
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    root = cfg.root
    root.mkdir(parents=True, exist_ok=True)
    stages = build_plan(cfg)
    if only:
        unknown = [s for s in only if s not in {st.id for st in stages}]
        if unknown:
            raise GrowmergeError(f"no stage named {unknown[0]!r} (see `growmerge study plan`)")
    write_json_atomic(root / "plan.json", [{"id": s.id, "kind": s.kind, "deps": s.deps,
                                            "fingerprint": s.fingerprint} for s in stages])
    t_study = time.perf_counter()
    heads = {s.id: f"[{i}/{len(stages)}] {s.id}" for i, s in enumerate(stages, 1)}
    todo = []
    for s in stages:
        if only and s.id not in only:
            continue
        if is_done(root, s):
            echo(f"{heads[s.id]}: done")
        else:
            todo.append(s)
    with Results(root / "results.sqlite"):
        pass  # create the schema once, before any worker opens the file (concurrent creation locks)
    if jobs == 1:
        with Results(root / "results.sqlite") as results:
            ctx = Context(cfg, root, results, say=echo, interactive=sys.stderr.isatty())
            for stage in todo:
                run_stage(ctx, stage, heads[stage.id], echo, t_study)
    else:
        run_parallel(cfg, todo, heads, jobs, t_study)
    return stages


def run_parallel(cfg: StudyConfig, todo: list[Stage], heads: dict[str, str], jobs: int, t_study: float) -> None:
    """Independent stages in `jobs` worker processes; a stage starts once none of its dependencies
    is still to run. A failure stops new starts, lets running stages finish, then re-raises."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    cores = os.cpu_count() or 1
    pending = list(todo)
    running: dict = {}
    failure: BaseException | None = None
    cfg_json = cfg.model_dump_json()
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        while (pending and failure is None) or running:
            busy = {s.id for s in pending} | set(running.values())
            ready = [s for s in pending if not any(d in busy for d in s.deps)] if failure is None else []
            for stage in ready[: jobs - len(running)]:
                pending.remove(stage)
                # A stage that runs alone gets every core; side by side, one thread each (2 threads
                # per process on a shared 2-core machine collapse several-fold).
                alone = len(running) == 0 and len(ready) == 1
                threads = cfg.threads or (cores if alone else max(1, cores // jobs))
                fut = pool.submit(_worker, cfg_json, stage.id, heads[stage.id], threads, t_study)
                running[fut] = stage.id
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                running.pop(fut)
                if fut.exception() is not None and failure is None:
                    failure = fut.exception()
    if failure is not None:
        raise failure
