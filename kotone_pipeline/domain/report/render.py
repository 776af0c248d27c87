"""The workflow log rendered: markdown, one self-contained HTML page, JSON; and the report files."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kotone_pipeline.domain.data.jsonl import atomic_writer
from kotone_pipeline.domain.report.model import Report
from kotone_pipeline.domain.report.plots import png_data_uri, render_plots
from kotone_pipeline.domain.report.sections import Parts, sections

REPORTS_DIR = "reports"
MD_FILE, HTML_FILE = "workflow_log.md", "workflow_log.html"


# --- markdown ---------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_angles(text: str) -> str:
    """``<`` and ``>`` as entities outside `code spans`: a markdown renderer (GitHub's, the Dagster UI's)
    takes ``<email>`` or ``cycle-<id>`` for an HTML tag and drops it. Inside a code span they show as typed."""
    pieces = text.split("`")
    for i in range(0, len(pieces), 2):  # even pieces are outside code spans
        pieces[i] = pieces[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(pieces)


def _md_parts(parts: Parts, in_table: bool = False) -> str:
    out = []
    for text, href in parts:
        shown = _md_angles(_md_escape(text) if in_table else text.replace("\n", " "))
        out.append(f"[{shown}]({href})" if href else shown)
    return "".join(out)


def to_markdown(report: Report, plots: Mapping[str, bytes] | None = None) -> str:
    """The report as markdown; ``plots`` (name -> PNG) are embedded as data URIs. None: no plots section."""
    lines: list[str] = []
    for section in sections(report, with_plots=plots is not None):
        lines += ["#" * section.level + " " + section.title, ""]
        for kind, data in section.blocks:
            if kind == "para":
                lines += [_md_parts(data), ""]
            elif kind == "list":
                lines += [f"- {_md_parts(item)}" for item in data] + [""]
            elif kind == "code":
                lines += ["```bash", data, "```", ""]
            elif kind == "table":
                lines.append("| " + " | ".join(data.headers) + " |")
                lines.append("|" + "---|" * len(data.headers))
                lines += ["| " + " | ".join(_md_parts(cell, True) for cell in row) + " |" for row in data.rows]
                lines.append("")
            elif kind == "details":
                # Raw HTML that GitHub and Dagster's markdown both fold; the blank lines keep the list markdown.
                summary, items = data
                lines += [f"<details><summary>{html.escape(summary)}</summary>", ""]
                lines += [f"- {_md_parts(item)}" for item in items] + ["", "</details>", ""]
            elif kind == "image" and plots is not None:
                name, title = data
                if name in plots:
                    lines += [f"![{title}]({png_data_uri(plots[name])})", ""]
    return "\n".join(lines).rstrip() + "\n"


# --- HTML -------------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#1f2328;max-width:1400px}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1.1rem;margin-top:1.5rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;vertical-align:top;text-align:left}
th{background:#f6f8fa}tr:nth-child(even) td{background:#fbfcfd}
pre{background:#f6f8fa;padding:.75rem;overflow-x:auto;font-size:.85rem}
img{max-width:100%;border:1px solid #d0d7de;margin:.5rem 0;display:block}
a{color:#0969da}
""".strip()


def _html_parts(parts: Parts) -> str:
    out = []
    for text, href in parts:
        shown = html.escape(text)
        out.append(f'<a href="{html.escape(href, quote=True)}">{shown}</a>' if href else shown)
    return "".join(out)


def to_html(report: Report, plots: Mapping[str, bytes] | None = None) -> str:
    """One self-contained HTML page: inline CSS, PNGs as data URIs, no script and no external resource."""
    body: list[str] = []
    for section in sections(report, with_plots=plots is not None):
        body.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        for kind, data in section.blocks:
            if kind == "para":
                body.append(f"<p>{_html_parts(data)}</p>")
            elif kind == "list":
                body.append("<ul>" + "".join(f"<li>{_html_parts(item)}</li>" for item in data) + "</ul>")
            elif kind == "code":
                body.append(f"<pre><code>{html.escape(data)}</code></pre>")
            elif kind == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in data.headers)
                rows = "".join(
                    "<tr>" + "".join(f"<td>{_html_parts(cell)}</td>" for cell in row) + "</tr>" for row in data.rows
                )
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "details":
                summary, items = data
                listed = "".join(f"<li>{_html_parts(item)}</li>" for item in items)
                body.append(f"<details><summary>{html.escape(summary)}</summary><ul>{listed}</ul></details>")
            elif kind == "image" and plots is not None:
                name, title = data
                if name in plots:
                    body.append(f'<img alt="{html.escape(title, quote=True)}" src="{png_data_uri(plots[name])}">')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Kotone workflow log</title>\n"
        f"<style>\n{_CSS}\n</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


# --- JSON -------------------------------------------------------------------------------------------


def to_json(report: Report) -> str:
    return report.model_dump_json(indent=2) + "\n"


@dataclass
class RenderedReport:
    markdown: str
    html: str
    plots: dict[str, bytes]


def render_report(report: Report) -> RenderedReport:
    plots = render_plots(report)
    return RenderedReport(to_markdown(report, plots), to_html(report, plots), plots)


def write_report_files(directory: Path, rendered: RenderedReport) -> dict[str, Path]:
    """``workflow_log.md`` and ``workflow_log.html`` under ``directory``, each written atomically."""
    paths = {"md": Path(directory) / MD_FILE, "html": Path(directory) / HTML_FILE}
    for kind, text in (("md", rendered.markdown), ("html", rendered.html)):
        with atomic_writer(paths[kind]) as handle:
            handle.write(text)
    return paths
