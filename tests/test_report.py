"""`snakemake --report`: every table and figure is in it with its caption (workflow/report/<family rule>.rst)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from videoktr.report import grid
from videoktr.config import validate

sys.path.insert(0, str(Path(__file__).parent))
import test_tables as tt  # noqa: E402  (fixture summaries and training logs)
from conftest import BIN, ENV, ROOT

TOKEN_FIGURES = ["fig2", "fig4", "fig5", "fig6", "fig11", "fig12"]


def family(name: str) -> tuple[str, str, str]:
    """(rule, wildcard, caption file) of a table or figure: one rule per family (workflow/rules/report.smk, figures.smk)."""
    if name.startswith("table"):
        return ("cost_table", "table", "table4") if grid.TARGETS[name].kind == "cost" else ("table", "table", "table")
    if name in TOKEN_FIGURES:
        return ("token_figure_html" if name == "fig2" else "token_figure"), "fig", "token_figure"
    return "accuracy_figure", "fig", "accuracy_figure"


def render(name: str, config: dict) -> str:
    """A caption as Snakemake renders it: Jinja with the `snakemake` object, then reStructuredText to HTML
    (docutils stops at the first warning here, where the report would print the text with an error box)."""
    from docutils.core import publish_parts
    from jinja2 import Environment, StrictUndefined

    rule, wildcard, caption = family(name) if name != "workflow" else ("all", None, "workflow")
    text = (ROOT / f"workflow/report/{caption}.rst").read_text()
    snakemake = SimpleNamespace(config=config, rule=rule, wildcards={wildcard: name} if wildcard else {}, params={})
    rst = Environment(undefined=StrictUndefined).from_string(text).render(snakemake=snakemake)
    return publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["body"]


@pytest.mark.parametrize("path", ["config/config.yaml", "config/paper.yaml"])
def test_every_caption_renders_with_both_configs(path):
    config = validate(yaml.safe_load((ROOT / path).read_text()))
    for name in [*grid.TARGETS, *TOKEN_FIGURES, "workflow"]:
        html = render(name, config)
        assert len(html) > 80, name
        if name in grid.configured(config):  # the rows it shows, by the paper's label and our run
            for label, run in grid.rows(config, name).items():
                assert label in html and run in html, (name, label)
    tiny = "embedded tiny world" in render("workflow", config)
    assert tiny == (config["model"]["source"] == "tiny")


def test_every_table_and_figure_rule_flags_its_output_for_the_report():
    rules = (ROOT / "workflow/rules/report.smk").read_text() + (ROOT / "workflow/rules/figures.smk").read_text()
    for name in [*grid.TARGETS, *TOKEN_FIGURES]:
        _, wildcard, caption = family(name)
        ext = "csv" if name.startswith("table") else "png"
        assert f'report(f"{{{"TABLES" if ext == "csv" else "FIGURES"}}}/{{{{{wildcard}}}}}.{ext}", ' \
               f'caption="../report/{caption}.rst"' in rules, name


def test_the_report_holds_every_grid_table_and_figure(tmp_path):
    """The table and figure rules run on fixture summaries and training logs (the rules that would make those are
    not allowed to run), then `snakemake --report` collects them."""
    for item in ("Snakefile", "workflow", "config", "envs"):
        os.symlink(ROOT / item, tmp_path / item)
    cfg = tt.config()
    out = tmp_path / "results/tiny"
    tt.write_summaries(out, sorted({e for n in grid.configured(cfg) if grid.TARGETS[n].kind != "cost"
                                    for e in grid.evaluations(cfg, n)}))
    for run in grid.rows(cfg, "table4").values():
        (out / f"train/{run}").mkdir(parents=True)
        (out / f"train/{run}/metrics.json").write_text(json.dumps(tt.metrics(run)))
    for name, entry in cfg["released"].items():  # table1_released reads each checkpoint's download manifest
        (out / f"models/{name}").mkdir(parents=True)
        (out / f"models/{name}/hub_manifest.json").write_text(json.dumps(
            {"repo": entry["hub"]["repo"], "commit": None, "mirror": "results/tiny/mirror", "files": {}}))
    targets = [str(p) for n in grid.configured(cfg)
               for p in target_path(n, out.relative_to(tmp_path))]
    allowed = ["--allowed-rules", *sorted({family(n)[0] for n in grid.configured(cfg)})]
    res = subprocess.run([f"{BIN}/snakemake", "--cores", "2", *targets, *allowed], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    res = subprocess.run([f"{BIN}/snakemake", "--report", "results/tiny/report.html", *targets, *allowed],
                         cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    html = (out / "report.html").read_text()
    for name in grid.configured(cfg):
        assert f"{name}.{'csv' if name.startswith('table') else 'png'}" in html, name
        # the caption's first sentence, as rendered from workflow/report/<name>.rst
        assert render(name, cfg).split(":")[0].split(">")[-1] in html, name
    assert "not the paper's model or benchmarks" in html


def target_path(name: str, out: Path) -> list[Path]:
    kind = "tables" if name.startswith("table") else "figures"
    return [out / f"{kind}/{name}.{'md' if kind == 'tables' else 'png'}"]
