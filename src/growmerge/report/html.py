"""Render the report: a self-contained ``index.html`` (PNGs embedded as data URIs, also saved beside
it) and a ``summary.md`` with the findings table."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

from growmerge.report.figures import Figure
from growmerge.report.findings import RULE

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}.nodata{color:#a40;font-style:italic}
img{max-width:100%}.s-✓{color:#070;font-weight:bold}.s-✗{color:#b00;font-weight:bold}
.s-inconclusive{color:#666}.cap{color:#555;font-size:13px}.near-control{color:#a40}
"""


def esc(x) -> str:
    return html.escape(str(x))


def table(columns: list, rows: list[list], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="{classes[j] if classes else ""}">{esc(v)}</td>' for j, v in enumerate(r)) + "</tr>"
        for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def findings_table(found: list[dict]) -> str:
    rows = "".join(
        f'<tr><td>{f["number"]}</td><td>{esc(f["text"])}</td><td class="s-{esc(f["status"])}">{esc(f["status"])}</td>'
        f'<td>{esc(f["evidence"])}</td><td class="near-control">{esc(f.get("control", ""))}</td></tr>' for f in found)
    return ('<table id="findings"><tr><th>#</th><th>Finding (paper)</th><th>This run</th><th>Evidence</th>'
            f"<th>Within noise of the unigram control</th></tr>{rows}</table>")


def figure_html(f: Figure, out_dir: Path) -> str:
    parts = [f'<h3 id="{esc(f.key)}">{esc(f.title)}</h3>', f'<p class="cap">{esc(f.caption)}</p>']
    for name in f.files:
        data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
        parts.append(f'<img alt="{esc(name)}" title="{esc(name)}" src="data:image/png;base64,{data}">')
    if f.note:
        parts.append(f'<p class="nodata">{esc(f.note)}</p>')
    if f.table and f.table["rows"]:
        parts.append(table(f.table["columns"], f.table["rows"]))
    return "\n".join(parts)


def models_table(models: dict) -> str:
    rows = [[m["name"], m["kind"], m["setup"] or "", m["scale"] or "", "+".join(m["languages"]),
             "" if m["tokens"] is None else f"{m['tokens']:,}",
             "" if m["flops_cumulative"] is None else f"{m['flops_cumulative']:.3g}"]
            for m in models.values() if m["kind"] != "merge"]
    if not rows:
        return '<p class="nodata">no data: no models in the results</p>'
    return table(["model", "kind", "setup", "scale", "languages", "tokens", "cumulative FLOPs"], rows)


def render_html(title: str, found: list[dict], figures: list[Figure], models: dict, n_merges: int,
                out_dir: Path) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        f"<h1>{esc(title)}</h1>",
        f"<p>Generated {stamp} from results.sqlite: {sum(m['kind'] != 'merge' for m in models.values())} models, "
        f"{n_merges} merges.</p>",
        "<h2>Findings of the paper, checked on this run</h2>",
        findings_table(found),
        *([f'<p class="cap" id="la-sets">{esc(found.note)}</p>'] if getattr(found, "note", "") else []),
        f'<p class="cap">{esc(RULE)}</p>',
        "<h2>Figures</h2>",
        *(figure_html(f, out_dir) for f in figures),
        "<h2>Models</h2>",
        models_table(models),
    ]
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def md_cell(x) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, found: list[dict], figures: list[Figure]) -> str:
    lines = [f"# {title}", "", "## Findings", "",
             "| # | Finding (paper) | This run | Evidence | Within noise of the unigram control |", "|---|---|---|---|---|"]
    lines += [f"| {f['number']} | {md_cell(f['text'])} | {f['status']} | {md_cell(f['evidence'])} "
              f"| {md_cell(f.get('control', ''))} |" for f in found]
    if getattr(found, "note", ""):
        lines += ["", found.note]
    lines += ["", RULE, "", "## Figures", ""]
    for f in figures:
        files = ", ".join(f"![{name}]({name})" for name in f.files)
        lines.append(f"### {f.title}")
        lines += ["", files or "", f"*{f.note}*" if f.note else "", ""]
        if f.table and f.table["rows"]:
            lines.append("| " + " | ".join(md_cell(c) for c in f.table["columns"]) + " |")
            lines.append("|" + "---|" * len(f.table["columns"]))
            lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in f.table["rows"]]
            lines.append("")
    return "\n".join(line for i, line in enumerate(lines) if line or (i and lines[i - 1])) + "\n"
