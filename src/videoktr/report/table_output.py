"""How a table is written: CSV (every number, intervals in their own columns), Markdown, LaTeX and HTML (each
accuracy of ours as "45.8 [31.2, 60.4]", "(N err)" beside a cell with error rows, and the paired differences as a
second table). The HTML page is what `snakemake --report` shows; it carries the CSV as a download link.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

from videoktr.report import uncertainty

DIFFERENCE_NOTE = ("each cell is the paired bootstrap difference over the same question ids with its 95% interval; "
                   "(n.s.): the interval contains 0, i.e. no difference shown at this number of questions; [--]: no "
                   "per-question scores, so no interval")


def accuracy_columns(df: pd.DataFrame) -> list[str]:
    """Our accuracy columns (each benchmark and "mean"): those with an interval beside them."""
    return [c for c in df.columns if f"{c}_lo" in df.columns and f"{c}_hi" in df.columns and " vs " not in c]


def difference_columns(df: pd.DataFrame) -> dict[str, list[str]]:
    """{baseline label: its difference columns "c vs BASE"} in column order."""
    ours = set(accuracy_columns(df))
    out: dict[str, list[str]] = {}
    for c in df.columns:
        col, _, base = c.partition(" vs ")
        if base and col in ours and f"{c}_lo" in df.columns:
            out.setdefault(base, []).append(c)
    return out


def _cell(value, lo, hi, errors) -> str | None:
    if value is None or value != value:
        return None
    text = uncertainty.fmt_interval(value, lo, hi)
    return text + (f" ({int(errors)} err)" if errors == errors and errors else "")


def display(df: pd.DataFrame) -> pd.DataFrame:
    """The table as shown in Markdown and LaTeX: each accuracy of ours as "45.8 [31.2, 60.4]" (its 95% interval;
    the bare value without per-question scores), "(3 err)" beside a cell whose evaluation had error rows; the paper's
    columns as they are. Intervals, errors and differences have no columns of their own here."""
    ours = accuracy_columns(df)
    hidden = {f"{c}_{x}" for c in ours for x in ("lo", "hi", "errors")}
    hidden |= {f"{c}{x}" for cols in difference_columns(df).values() for c in cols for x in ("", "_lo", "_hi")}
    out = df[[c for c in df.columns if c not in hidden]].astype(object)
    for c in ours:
        err = df[f"{c}_errors"] if f"{c}_errors" in df.columns else pd.Series(math.nan, index=df.index)
        out[c] = pd.Series([_cell(v, lo, hi, e) for v, lo, hi, e in zip(df[c], df[f"{c}_lo"], df[f"{c}_hi"], err)],
                           index=df.index, dtype=object)
    return out.astype(object).where(out.notna(), None)


def differences(df: pd.DataFrame) -> pd.DataFrame | None:
    """The paired differences as shown (long): one row per (row of ours, baseline), a column per benchmark and the
    mean, each "+1.2 [-3.1, +5.4] (n.s.)"; None when the table compares nothing."""
    cols = difference_columns(df)
    if not cols:
        return None
    out = []
    for base, cs in cols.items():
        for idx, r in df.iterrows():
            if all(r[c] != r[c] for c in cs):  # not compared with this baseline
                continue
            key = dict(zip(df.index.names, idx if isinstance(idx, tuple) else (idx,)))
            out.append(key | {"vs": base} | {c.partition(" vs ")[0]: uncertainty.fmt_difference(
                r[c], r[f"{c}_lo"], r[f"{c}_hi"]) for c in cs})
    return pd.DataFrame(out, dtype=object) if out else None


def latex_text(text: str) -> str:
    """Plain text for a LaTeX caption (pandas escapes cells, not captions): % _ & # $ { } ~ ^ \\ escaped."""
    table = {"\\": r"\textbackslash{}", "%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{",
             "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(table.get(ch, ch) for ch in text)


def write(df: pd.DataFrame, stem, title: str, lines: list[str]) -> None:
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(f"{stem}.csv")
    shown = display(df) if accuracy_columns(df) else df.astype(object).where(df.notna(), None)
    diff = differences(df)
    body = shown.reset_index().to_markdown(index=False, floatfmt="g", missingval="--")
    md = f"# {title}\n\n" + "".join(f"> {x}\n>\n" for x in lines) + "\n" + body + "\n"
    if diff is not None:
        md += (f"\n## Paired differences (ours, percentage points: the row minus the `vs` row)\n\n"
               f"> {DIFFERENCE_NOTE}\n\n" + diff.to_markdown(index=False, missingval="--") + "\n")
    Path(f"{stem}.md").write_text(md)
    latex = shown.to_latex(na_rep="--", float_format=lambda v: f"{v:g}", escape=True,
                           caption=latex_text(f"{title}. " + ". ".join(lines) + "."), label=f"tab:{stem.name}")
    if diff is not None:
        latex += "\n" + diff.to_latex(index=False, na_rep="--", escape=True, label=f"tab:{stem.name}-differences",
                                      caption=latex_text(f"{title}: paired differences (ours, percentage points: "
                                                         f"the row minus the vs row). {DIFFERENCE_NOTE}"))
    Path(f"{stem}.tex").write_text("% needs \\usepackage{booktabs,multirow}\n" + latex)
    Path(f"{stem}.html").write_text(html_page(shown, diff, title, lines, Path(f"{stem}.csv")))


# Inside the report, a result is shown alone in a frame: the page brings its own style.
STYLE = """<style>
body { font-family: system-ui, sans-serif; font-size: 13px; margin: 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.notes { color: #555; max-width: 70em; } .notes li { margin: 0.2em 0; }
</style>"""


def _fmt(v) -> str:
    """A plain number at 4 significant digits (a cost of 12.3456789 s reads 12.35); text as it is."""
    if v is None or v != v:
        return "--"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def html_table(df: pd.DataFrame, index: bool = True) -> str:
    return df.to_html(index=index, na_rep="--", formatters={c: _fmt for c in df.columns}, border=0,
                      escape=True, justify="center")


def html_page(shown: pd.DataFrame, diff: pd.DataFrame | None, title: str, lines: list[str], csv: Path) -> str:
    """A self-contained page: the title, the table, its paired differences, the notes, and the CSV as a download."""
    link = "data:text/csv;base64," + base64.b64encode(csv.read_bytes()).decode()
    body = [f"<h3>{html.escape(title)}</h3>", html_table(shown.reset_index(), index=False)]
    if diff is not None:
        body += ["<h4>Paired differences (ours, percentage points: the row minus the <code>vs</code> row)</h4>",
                 html_table(diff, index=False), f"<p class=notes>{html.escape(DIFFERENCE_NOTE)}</p>"]
    body.append("<ul class=notes>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>")
    body.append(f'<p><a download="{csv.name}" href="{link}">Download {csv.name}</a> (every number, the intervals '
                "in their own columns)</p>")
    return f"<!DOCTYPE html>\n<html><head><meta charset=utf-8>{STYLE}</head><body>\n" + "\n".join(body) + \
        "\n</body></html>\n"
