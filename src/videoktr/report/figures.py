"""The paper's token-level figures, from a Video-KTR run's token log and gradient diagnostics only.

Each `figN_*` function takes DataFrames and an output stem, writes `stem.png`, `stem.pdf` and `stem.csv` (exactly the
numbers plotted; Fig. 2 also `stem.html`) and returns the plotted numbers as a DataFrame:

- Fig. 2  `fig2_example`:    one response, its tokens coloured by the signal(s) that selected them;
- Fig. 4  `fig4_pos`:        part-of-speech shares of the words each signal selects (spaCy; see `videoktr.report.words`);
- Fig. 5  `fig5_overlap`:    the three token sets E, V, T: every region of their Venn diagram, pairwise Jaccard;
- Fig. 6  `fig6_wordclouds`: word clouds of selected vs unselected words;
- Fig. 11 `fig11_gradients`: losses, advantage variance, gradient norms and cosines over training steps;
- Fig. 12 `fig12_positions`: selection probability by relative position in the completion;

and, from evaluation summaries beside the paper's numbers (config/reference/paper_tables.csv; the grid of each in
`videoktr.report.grid`): Fig. 3a (RL methods under one recipe), Fig. 3b (per subtask), Figs. 7-10 (token weighting,
distance, update ratio, perturbations), each by `accuracy_figure` / `fig3b_subtasks`.

CLI (what the Snakemake rules call): `python -m videoktr.report.figures fig4 --token-log DIR --out STEM --spacy-model M`,
one subcommand per figure, or `all --token-log DIR --gradients CSV --out-dir DIR`.
"""
# The docstring above is the CLI's --help. The figures live in token_figures (Figs. 4, 5, 6, 11, 12), example_figure
# (Fig. 2) and accuracy_figures (Figs. 3a, 3b, 7-10); this module reads the inputs and dispatches.

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from videoktr.report.accuracy_figures import ACCURACY_FIGURES, build_accuracy
from videoktr.report.example_figure import fig2_example
from videoktr.report.token_figures import (fig4_pos, fig5_overlap, fig6_wordclouds, fig11_gradients, fig12_positions,
                                           pos_words)
from videoktr.rl.token_log import read_token_log

logger = logging.getLogger(__name__)


def build(name: str, a) -> None:
    """Build one figure from the CLI arguments `a` into the stem `a.out`."""
    stem = a.out
    if name == "fig11":
        if not Path(a.gradients).exists():
            raise SystemExit(f"{a.gradients}: no gradient diagnostics (train.diagnostics_every is 0?)")
        fig11_gradients(pd.read_csv(a.gradients), stem)
        return
    log = read_token_log(a.token_log)
    if name in ("fig4", "fig6"):
        words = pos_words(log, a.spacy_model, a.max_completions)
        (fig4_pos(words, stem) if name == "fig4" else fig6_wordclouds(words, stem))
    elif name == "fig5":
        fig5_overlap(log, stem)
    elif name == "fig12":
        fig12_positions(log, stem, a.bins)
    elif name == "fig2":
        fig2_example(log, stem, a.step, a.sample_id)
    logger.info("%s written to %s.{png,pdf,csv}", name, stem)


def build_all(a) -> None:
    out = Path(a.out_dir)
    log = read_token_log(a.token_log)
    words = pos_words(log, a.spacy_model, a.max_completions)
    fig2_example(log, out / "fig2", a.step, a.sample_id)
    fig4_pos(words, out / "fig4")
    fig5_overlap(log, out / "fig5")
    fig6_wordclouds(words, out / "fig6")
    fig12_positions(log, out / "fig12", a.bins)
    if a.gradients:
        fig11_gradients(pd.read_csv(a.gradients), out / "fig11")
    logger.info("figures written to %s", out)


# What each token-log figure shows (its subcommand's help).
TOKEN_FIGURE_HELP = {
    "fig2": "one response, its tokens coloured by the signal(s) that selected them",
    "fig4": "part-of-speech shares of the words each signal selects",
    "fig5": "overlap of the three token sets E, V, T and their pairwise Jaccard indices",
    "fig6": "word clouds of selected against unselected words",
    "fig11": "gradient diagnostics over training steps",
    "fig12": "selection probability by relative position in the completion",
    "all": "every token-log figure into one folder",
}


def parser(prog: str = "python -m videoktr.report.figures") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="figure", required=True, metavar="FIGURE", help="the figure to build")
    for name in ACCURACY_FIGURES:
        text = f"{name} from evaluation summaries, the paper's numbers beside"
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--cfg", required=True, help="JSON of the config sections tables, eval, runs")
        s.add_argument("--summaries", nargs="+", required=True,
                       help="evaluation summaries (eval/<model>/<benchmark>/f<frames>.summary.json) of its rows")
        s.add_argument("--reference", required=True, help="the paper's numbers (paper_tables.csv)")
        s.add_argument("--out", required=True, help="output stem: writes STEM.png, STEM.pdf, STEM.csv")
    for name in ("fig2", "fig4", "fig5", "fig6", "fig11", "fig12", "all"):
        s = sub.add_parser(name, help=TOKEN_FIGURE_HELP[name], description=TOKEN_FIGURE_HELP[name])
        if name != "fig11":
            s.add_argument("--token-log", required=True, help="folder of token-log Parquet parts (or one file)")
        if name in ("fig11", "all"):
            s.add_argument("--gradients", required=name == "fig11", help="gradients.csv of the run")
        if name == "all":
            s.add_argument("--out-dir", required=True, help="output folder: figN.png, .pdf, .csv for each figure")
        else:
            s.add_argument("--out", required=True, help="output stem: writes STEM.png, STEM.pdf, STEM.csv")
        if name in ("fig4", "fig6", "all"):
            s.add_argument("--spacy-model", default="en_core_web_sm", help="spaCy package name")
            s.add_argument("--max-completions", type=int, default=None,
                           help="tag a random sample of at most this many completions (default: all)")
        if name in ("fig12", "all"):
            s.add_argument("--bins", type=int, default=10, help="bins of relative position (default 10)")
        if name in ("fig2", "all"):
            s.add_argument("--step", type=int, default=None, help="with --sample-id: the response to show")
            s.add_argument("--sample-id", default=None, help="default: a representative one of the last step")
    return p


def main(argv=None, prog: str = "python -m videoktr.report.figures") -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    a = parser(prog).parse_args(argv)
    if a.figure in ACCURACY_FIGURES:
        build_accuracy(a.figure, a)
    elif a.figure == "all":
        build_all(a)
    else:
        build(a.figure, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
