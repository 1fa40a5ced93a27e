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
from videoktr.report.report_view import CATEGORIES, category
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

    rule, wildcard, caption = family(name) if name not in ("workflow", "headline") else ("all", None, name)
    text = (ROOT / f"workflow/report/{caption}.rst").read_text()
    snakemake = SimpleNamespace(config=config, rule=rule, wildcards={wildcard: name} if wildcard else {}, params={})
    rst = Environment(undefined=StrictUndefined).from_string(text).render(snakemake=snakemake, files=[],
                                                                          categories={})
    return publish_parts(rst, writer="html", settings_overrides={"halt_level": 2})["body"]


@pytest.mark.parametrize("path", ["config/config.yaml", "config/paper.yaml"])
def test_every_caption_renders_with_both_configs(path):
    config = validate(yaml.safe_load((ROOT / path).read_text()))
    for name in [*grid.TARGETS, *TOKEN_FIGURES, "workflow", "headline"]:
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
        ext = "html" if name.startswith("table") else "png"
        assert f'report(f"{{{"TABLES" if ext == "html" else "FIGURES"}}}/{{{{{wildcard}}}}}.{ext}", ' \
               f'caption="../report/{caption}.rst", category=report_category)' in rules, name
        category(name)  # each has its place among the paper's parts


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
               for p in target_path(n, out.relative_to(tmp_path))] + ["results/tiny/report/headline.html"]
    allowed = ["--allowed-rules", *sorted({family(n)[0] for n in grid.configured(cfg)}), "headline"]
    res = subprocess.run([f"{BIN}/snakemake", "--cores", "2", *targets, *allowed], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = ["--report", "results/tiny/report.html", "--report-metadata", "workflow/report/metadata.yaml"]
    res = subprocess.run([f"{BIN}/snakemake", *report, *targets, *allowed], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    html = (out / "report.html").read_text()
    results, categories, metadata = (report_variable(html, v) for v in ("results", "categories", "metadata"))
    entries = {Path(path).name: entry for path, entry in results.items()}
    for name in grid.configured(cfg):
        entry = entries[f"{name}.{'html' if name.startswith('table') else 'png'}"]
        # the caption's first sentence, as rendered from workflow/report/<name>.rst
        assert render(name, cfg).split(":")[0].split(">")[-1] in entry["caption"], name
        assert "embedded tiny world" in entry["caption"], name  # the caveat, on every table and figure
        assert entry["job_properties"]["rule"] == family(name)[0]
        in_category = [Path(p).name for sub in categories[category(name)].values() for p in sub]
        assert Path(entry["filename"]).name in in_category or f"{name}." in " ".join(in_category), name
    # every table is an HTML table in the report (its CSV a download inside it), none a CSV entry
    tables = [e for e in results.values() if e["job_properties"]["rule"] in ("table", "cost_table")]
    assert tables and all(e["mime_type"] == "text/html" for e in tables)
    assert not [e for e in results.values() if e["mime_type"] == "text/csv"]
    import base64

    page = base64.b64decode(entries["table2.html"]["data_uri"].split(",", 1)[1]).decode()
    assert "<table" in page and "Paired differences" in page and 'download="table2.csv"' in page
    # in the paper's parts, in order; no "Other", no catch-all "Tables"/"Figures"
    assert set(categories) <= set(CATEGORIES) and "1 Main results" in categories
    # no rule's config JSON in the sidebar: params name the sections only
    for e in results.values():
        params = e["job_properties"]["params"]
        assert '\\"' not in params and '{"' not in params and '"tables"' not in params, params[:200]
    assert "cfg=<config sections tables, eval, runs, model, sft_models" in entries["table2.html"]["job_properties"][
        "params"]
    # the report opens on its description (metadata given), which is the study and, with Table 1, its headline
    assert metadata and "embedded tiny world" in report_variable(html, "workflow_desc")
    if "table1" in grid.configured(cfg):
        assert "headline.html" in entries and "Video-KTR (ours) - GRPO (ours)" in report_variable(html,
                                                                                                   "workflow_desc")


def report_variable(html: str, name: str):
    """A JSON value the report's page defines in `var NAME = ...;` (its results, categories, metadata)."""
    import re

    m = re.search(rf'<script id="{name.replace("_", "-")}">\s*var {name} = (.*?);\s*</script>', html, re.S)
    assert m, name
    return json.loads(m.group(1))


def target_path(name: str, out: Path) -> list[Path]:
    kind = "tables" if name.startswith("table") else "figures"
    return [out / f"{kind}/{name}.{'md' if kind == 'tables' else 'png'}"]
