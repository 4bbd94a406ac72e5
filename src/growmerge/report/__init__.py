"""The study report: figures answering the paper's two research questions and the findings table.

``build_report(run_dir)`` writes ``run_dir/report/{index.html, summary.md, *.png}`` atomically;
``findings(results)`` returns the findings table alone (the demo prints it in the terminal).
"""

from __future__ import annotations

from pathlib import Path

from growmerge.report.findings import findings, findings_text
from growmerge.ledger import Results

__all__ = ["build_report", "findings", "findings_text"]


def build_report(run_dir: str | Path, results: Results | None = None) -> Path:
    """Write the report of a study run; returns the path of ``index.html``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; must precede any figure
    from growmerge.artifacts import atomic_dir
    from growmerge.report.figures import all_figures
    from growmerge.report.html import render_html, render_markdown
    from growmerge.report.seeds import several_seeds
    from growmerge.report.validity import valid_results
    from growmerge.report.view import StudyView

    run_dir = Path(run_dir)
    own = results is None
    results = Results(run_dir, must_exist=True) if own else results
    try:
        seeds = several_seeds(results)  # several training seeds: findings with intervals over them
        view = StudyView(results) if seeds is None else seeds.view  # the figures show every set
        # the findings only LA sets valid enough
        found = findings(StudyView(valid_results(results))) if seeds is None else seeds.findings
        models = {m["name"]: m for m in results.models()}  # every seed's
        title = f"growmerge study report: {run_dir.resolve().name}"
        with atomic_dir(run_dir / "report", force=True) as tmp:
            figures = all_figures(view, run_dir, tmp) + ([seeds.figure(tmp)] if seeds is not None else [])
            n_merges = sum(m["kind"] == "merge" for m in models.values())
            (tmp / "index.html").write_text(render_html(title, found, figures, models, n_merges, tmp),
                                            encoding="utf-8")
            (tmp / "summary.md").write_text(render_markdown(title, found, figures), encoding="utf-8")
    finally:
        if own:
            results.close()
    return run_dir / "report" / "index.html"
