"""``eval ... --html``: one self-contained HTML report, its tables sortable (click a header), the
report's figure inlined as a PNG, and a link per sequence to its viewer page when one was made."""

from __future__ import annotations

import base64
import io
import math
from html import escape as _escape
from importlib import resources

import pandas as pd


def _cell(value: object) -> str:
    if isinstance(value, float):
        text = "" if math.isnan(value) else f"{value:.2f}"
        return f'<td data-v="{"" if math.isnan(value) else repr(value)}">{text}</td>'
    return f"<td>{_escape(str(value))}</td>"


def html_table(df: pd.DataFrame, links: dict[str, str] | None = None) -> str:
    """``df`` as a sortable table; the index (first column) links to ``links[name]`` if given."""
    head = "".join(f"<th>{_escape(str(c))}</th>" for c in [df.index.name or "", *df.columns])
    rows = []
    for name, row in df.iterrows():
        href = (links or {}).get(str(name))
        first = (f'<td><a href="{_escape(href)}">{_escape(str(name))}</a></td>' if href
                 else f"<td>{_escape(str(name))}</td>")
        rows.append("<tr>" + first + "".join(_cell(v) for v in row.tolist()) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def report_html(title: str, tables: dict[str, pd.DataFrame], figure=None,
                links: dict[str, str] | None = None) -> str:
    """The report page: ``tables`` (caption -> DataFrame, index first), the matplotlib ``figure``
    (inlined PNG) and ``links`` (row name -> relative URL of its viewer page)."""
    parts = [f"<h2>{_escape(caption)}</h2>" + html_table(df, links) for caption, df in tables.items()]
    if figure is not None:
        buf = io.BytesIO()
        figure.savefig(buf, format="png", dpi=100)
        parts.append('<h2>Figure</h2><img alt="report figure" src="data:image/png;base64,'
                     + base64.b64encode(buf.getvalue()).decode("ascii") + '">')
    template = resources.files("posetracker.app.viewer").joinpath("templates", "report.html").read_text("utf-8")
    return template.replace("/*TITLE*/", _escape(title)).replace("/*BODY*/", "\n".join(parts), 1)
