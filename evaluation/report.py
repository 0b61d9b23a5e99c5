"""Report output: an evaluation result is a pandas DataFrame; this module prints and saves it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from posetracker.core.errors import InputError
from posetracker.core.fileio import atomic_write_text


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
    for idx, row in df.iterrows():
        cells = [str(idx)] + [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_report(df: pd.DataFrame, path: str | Path, title: str = "") -> None:
    """Bar chart of every numeric column of ``df`` (one group of bars per row) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num = df.select_dtypes("number")
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * num.shape[1] * max(1, len(num))), 4))
    num.T.plot.bar(ax=ax, rot=0)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=100)
    plt.close(fig)
