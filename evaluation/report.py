"""Report output: an evaluation result is a pandas DataFrame; this module prints and saves it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write, atomic_write_text


def format_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A fixed-width table for the terminal; floats with ``digits`` decimals."""
    return df.to_string(float_format=lambda v: f"{v:.{digits}f}")


def save_report(df: pd.DataFrame, path: str | Path) -> None:
    """Save by extension: ``.csv``, ``.json`` (records, index included) or ``.md`` (Markdown)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".csv":
        text = df.to_csv()
    elif ext == ".json":
        text = df.reset_index().to_json(orient="records", indent=2)
    elif ext in (".md", ".markdown"):
        text = _markdown(df) + "\n"
    else:
        raise InputError(f"--out {p}: unknown report format {ext or '(none)'} (use .csv, .json or .md)")
    atomic_write_text(p, text)


def _markdown(df: pd.DataFrame, digits: int = 4) -> str:
    # pandas' to_markdown needs the optional 'tabulate' package; a table this simple needs no library.
    index_name = df.index.name or ""
    cols = [index_name] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    # itertuples keeps each column's type (iterrows would make a count such as 79 a float)
    for idx, row in zip(df.index, df.itertuples(index=False)):
        cells = [str(idx)] + [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: Bounds of a plot, in inches at :data:`DPI` (so at most 1600 x 1400 pixels).
MAX_WIDTH_IN, MAX_HEIGHT_IN, DPI = 16.0, 14.0, 100
#: Font size of tick labels and cell values, in points; a label needs ~1.4x its size of room.
FONT_PT = 8.0


def _short(label: object, n: int = 32) -> str:
    text = str(label)
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def report_figure(df: pd.DataFrame, title: str = ""):
    """The figure of a report (a matplotlib ``Figure``, Agg): every float column of ``df`` (every
    numeric one when there is no float column), on one scale: 0..1 or percent.

    - One row (a total): horizontal bars, one per metric, the metric names on the y axis and
      each value written at the end of its bar (names never share a line, nothing covers a bar).
    - Several rows (per sequence, per crowd level): a heat map of rows x metrics, the value in
      each cell while cells are big enough to hold it, NaN cells grey. Rows get at least the
      height of one label; beyond what :data:`MAX_HEIGHT_IN` holds, only every k-th row is
      labelled (all rows are drawn), so labels never overlap and the size stays bounded.
    """
    import matplotlib

    matplotlib.use("Agg")

    # The figures are the float columns; integer columns are counts (a by-crowd report's
    # "images"), on no figure's scale: coloured with them, 79 images would squash every 0-1
    # figure into one colour.
    num = df.select_dtypes("floating")
    if num.shape[1] == 0:
        num = df.select_dtypes("number")
    if num.shape[1] == 0 or len(num) == 0:
        raise InputError("nothing to plot: the report has no numeric figures")
    values = num.to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    hi = float(finite.max()) if finite.size else 1.0
    lo = float(finite.min()) if finite.size else 0.0
    vmax = 1.0 if hi <= 1.0 else max(100.0, hi)  # fractions (COCO) or percent (PoseTrack)
    vmin = min(0.0, lo)
    if len(num) == 1:
        return _bar_figure(num, values[0], vmin, vmax, title)
    return _heat_map_figure(num, values, vmin, vmax, title)


def _label_room(names: list[str]) -> tuple[float, float]:
    """Inches of one label line, and of the longest of ``names`` (roughly)."""
    return 1.4 * FONT_PT / 72, max(len(n) for n in names) * 0.6 * FONT_PT / 72


def _bar_figure(num: pd.DataFrame, v: np.ndarray, vmin: float, vmax: float, title: str):
    """:func:`report_figure` of one row ``v`` (the metrics ``num.columns``): horizontal bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [_short(c) for c in num.columns]
    label_in, name_in = _label_room(names)
    n = len(names)
    height = min(MAX_HEIGHT_IN, 1.2 + n * max(label_in, 0.25))
    fig = Figure(figsize=(min(MAX_WIDTH_IN, 4.5 + name_in), height), dpi=DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)  # a figure of its own, not pyplot's global state
    ax = fig.add_subplot()
    y = np.arange(n)
    ax.barh(y, np.nan_to_num(v, nan=0.0), color="#4c72b0", height=0.7)
    ax.set_yticks(y, names, fontsize=FONT_PT)
    ax.invert_yaxis()  # first metric on top, as in the table
    span = vmax - vmin
    ax.set_xlim(vmin, vmax + 0.18 * span)  # room for the values after the bars
    for yi, val in zip(y, v):
        text = "NaN" if not np.isfinite(val) else f"{val:.4g}"
        ax.text(max(val, 0.0) if np.isfinite(val) else 0.0, yi, " " + text, va="center",
                ha="left", fontsize=FONT_PT - 1)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(_short(title or str(num.index[0]), 80), fontsize=FONT_PT + 2)
    return fig


def _heat_map_figure(num: pd.DataFrame, values: np.ndarray, vmin: float, vmax: float, title: str):
    """:func:`report_figure` of several rows: a heat map of rows x metrics."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [_short(c) for c in num.columns]
    label_in, name_in = _label_room(names)
    rows, cols = values.shape
    # Column width: the cell value ("100.0") must fit; row height: at least one label line
    # while the height bound allows, else rows shrink and only every k-th is labelled.
    col_in = max(0.42, label_in)
    row_label_in = max(len(_short(r)) for r in num.index) * 0.6 * FONT_PT / 72
    width = min(MAX_WIDTH_IN, 1.5 + row_label_in + cols * col_in + 1.0)
    avail_h = MAX_HEIGHT_IN - 1.5 - name_in
    row_in = min(max(label_in, 0.22), avail_h / rows)
    height = min(MAX_HEIGHT_IN, 1.5 + name_in + rows * row_in)
    col_in = min(col_in, (width - 2.5 - row_label_in) / cols)
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    import matplotlib.pyplot as plt  # only for the colour map registry; no figure is made

    cmap = plt.get_cmap("viridis").with_extremes(bad="#d0d0d0")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax,
                   aspect="auto", interpolation="nearest")
    row_step = max(1, int(np.ceil(label_in / row_in)))
    col_step = max(1, int(np.ceil(label_in / col_in)))
    ax.set_yticks(np.arange(0, rows, row_step),
                  [_short(r) for r in num.index[::row_step]], fontsize=FONT_PT)
    ax.set_xticks(np.arange(0, cols, col_step), names[::col_step], fontsize=FONT_PT,
                  rotation=90)
    ax.xaxis.tick_top()
    ax.tick_params(length=2)
    if row_in >= label_in and col_in >= 0.4:  # room for the values themselves
        norm = (values - vmin) / (vmax - vmin or 1.0)
        for i in range(rows):
            for j in range(cols):
                val = values[i, j]
                ax.text(j, i, "NaN" if not np.isfinite(val) else f"{val:.3g}" if vmax <= 1
                        else f"{val:.1f}", ha="center", va="center", fontsize=FONT_PT - 1.5,
                        color="black" if np.isfinite(val) and norm[i, j] > 0.6 else "white"
                        if np.isfinite(val) else "#555555")
    if rows > 1 and str(num.index[0]) == "total":  # the total row apart from the sequences
        ax.axhline(0.5, color="white", linewidth=2)
    cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cb.ax.tick_params(labelsize=FONT_PT)
    if title:
        ax.set_xlabel(_short(title, 80), fontsize=FONT_PT + 2)
    if row_step > 1:
        ax.set_ylabel(f"{rows} rows (one label every {row_step} rows)", fontsize=FONT_PT)
    return fig


def plot_report(df: pd.DataFrame, path: str | Path, title: str = "") -> None:
    """Draw :func:`report_figure` into a PNG at ``path`` (written atomically; a write error is
    one line naming ``path``)."""
    fig = report_figure(df, title)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
