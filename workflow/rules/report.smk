# Tables 1-5: each pulls exactly the evaluations (or training logs) of its own rows (videoktr.report.grid, config `tables`),
# and writes CSV, Markdown and LaTeX with the paper's numbers beside ours (config/reference/paper_tables.csv).
# The CSV goes into `snakemake --report`, with the caption workflow/report/<table>.rst.
from videoktr.report import grid

try:
    grid.check_all(config)
except grid.GridError as e:
    raise WorkflowError(f"config tables: {e}") from None

TABLES = f"{OUT}/tables"
REFERENCE = config["tables"]["reference"]
# What videoktr.report.grid reads; not common.cfg(): its sorted keys would lose the order of each table's rows.
GRID_CFG = json.dumps({s: config[s] for s in ("tables", "eval", "runs", "model", "sft_models")})


rule table1:
    input:
        summaries=grid.summary_input(config, "table1", OUT),
        reference=REFERENCE,
    output:
        csv=report(f"{TABLES}/table1.csv", caption="../report/table1.rst", category="Tables"),
        md=f"{TABLES}/table1.md",
        tex=f"{TABLES}/table1.tex",
    params:
        cfg=GRID_CFG,
        stem=lambda w, output: output.csv[: -len(".csv")],
        name=lambda w, output: os.path.basename(output.csv)[: -len(".csv")],  # table1 and each `use rule` below
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/tables/table1.log",
    shell:
        "python -m videoktr.report.tables {params.name} --cfg {params.cfg:q} --summaries {input.summaries}"
        " --reference {input.reference:q} --out {params.stem} > {log} 2>&1"


use rule table1 as table2 with:
    input:
        summaries=grid.summary_input(config, "table2", OUT),
        reference=REFERENCE,
    output:
        csv=report(f"{TABLES}/table2.csv", caption="../report/table2.rst", category="Tables"),
        md=f"{TABLES}/table2.md",
        tex=f"{TABLES}/table2.tex",
    log:
        f"{OUT}/logs/tables/table2.log",


use rule table1 as table3 with:
    input:
        summaries=grid.summary_input(config, "table3", OUT),
        reference=REFERENCE,
    output:
        csv=report(f"{TABLES}/table3.csv", caption="../report/table3.rst", category="Tables"),
        md=f"{TABLES}/table3.md",
        tex=f"{TABLES}/table3.tex",
    log:
        f"{OUT}/logs/tables/table3.log",


use rule table1 as table5 with:
    input:
        summaries=grid.summary_input(config, "table5", OUT),
        reference=REFERENCE,
    output:
        csv=report(f"{TABLES}/table5.csv", caption="../report/table5.rst", category="Tables"),
        md=f"{TABLES}/table5.md",
        tex=f"{TABLES}/table5.tex",
    log:
        f"{OUT}/logs/tables/table5.log",


rule table4:
    input:
        metrics=lambda w: grid.metrics_paths(config, "table4", OUT),
        reference=REFERENCE,
    output:
        csv=report(f"{TABLES}/table4.csv", caption="../report/table4.rst", category="Tables"),
        md=f"{TABLES}/table4.md",
        tex=f"{TABLES}/table4.tex",
    params:
        cfg=GRID_CFG,
        stem=lambda w, output: output.csv[: -len(".csv")],
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/tables/table4.log",
    shell:
        "python -m videoktr.report.tables table4 --cfg {params.cfg:q} --metrics {input.metrics}"
        " --reference {input.reference:q} --out {params.stem} > {log} 2>&1"
