"""How a table is written: CSV (every number, intervals in their own columns), Markdown and LaTeX (each accuracy of
ours as "45.8 [31.2, 60.4]", "(N err)" beside a cell with error rows, and the paired differences as a second table).
"""

from __future__ import annotations

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
