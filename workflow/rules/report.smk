# Tables 1-5: each pulls exactly the evaluations (or training logs) of its own rows (videoktr.report.grid, config
# `tables`), and writes CSV, Markdown and LaTeX with the paper's numbers beside ours (config/reference/paper_tables.csv).
# table1_released (Table 1's block of released checkpoints, config `released`) pulls their downloads and evaluations.
# The HTML page (the table rendered, its CSV as a download) goes into `snakemake --report`, in the category of its part of
# the paper (videoktr.report.report_view): Tables 1-3 and 5 with the caption workflow/report/table.rst, Table 4 with
# workflow/report/table4.rst.


rule table:  # the accuracy tables: Tables 1, 2, 3, 5, and Table 1's released checkpoints (table1_released)
    input:
        summaries=lambda w: grid.summary_paths(config, w.table, OUT),
        reference=REFERENCE,
        # table1_released: the released checkpoints' folders, for the commit each manifest records
        models=lambda w: [f"{OUT}/models/{n}" for n in RELEASED] if grid.TARGETS[w.table].kind == "released" else [],
    output:
        csv=f"{TABLES}/{{table}}.csv",
        md=f"{TABLES}/{{table}}.md",
        tex=f"{TABLES}/{{table}}.tex",
        html=report(f"{TABLES}/{{table}}.html", caption="../report/table.rst", category=report_category),
    wildcard_constraints:
        table="|".join(ACCURACY_TABLES),
    params:
        cfg=lambda w: RELEASED_GRID_CFG if grid.TARGETS[w.table].kind == "released" else GRID_CFG,
        stem=out_stem,
    threads: 1
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/tables/{{table}}.log",
    shell:
        "videoktr table {wildcards.table} --cfg {params.cfg:jsonq} --summaries {input.summaries}"
        " --models {input.models} --reference {input.reference:q} --out {params.stem} > {log} 2>&1"


rule cost_table:  # Table 4: training cost, from the training logs of its runs
    input:
        metrics=lambda w: grid.metrics_paths(config, w.table, OUT),
        reference=REFERENCE,
    output:
        csv=f"{TABLES}/{{table}}.csv",
        md=f"{TABLES}/{{table}}.md",
        tex=f"{TABLES}/{{table}}.tex",
        html=report(f"{TABLES}/{{table}}.html", caption="../report/table4.rst", category=report_category),
    wildcard_constraints:
        table="|".join(COST_TABLES),
    params:
        cfg=lambda w: GRID_CFG,  # a function: a plain string param is re-made as a str (no ReportParam)
        stem=out_stem,
    threads: 1
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/tables/{{table}}.log",
    shell:
        "videoktr table {wildcards.table} --cfg {params.cfg:jsonq} --metrics {input.metrics}"
        " --reference {input.reference:q} --out {params.stem} > {log} 2>&1"


rule headline:  # the report's first page: Table 1 at a glance (videoktr.report.headline), shown by workflow.rst
    input:
        f"{TABLES}/table1.csv",
    output:
        png=f"{OUT}/report/headline.png",
        pdf=f"{OUT}/report/headline.pdf",
        csv=f"{OUT}/report/headline.csv",
        html=report(f"{OUT}/report/headline.html", caption="../report/headline.rst", category=_category("headline")),
    params:
        cfg=lambda w: ReportParam(cfg("model")),
        stem=out_stem,
    threads: 1
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/tables/headline.log",
    shell:
        "videoktr headline --cfg {params.cfg:jsonq} --table1 {input:q} --out {params.stem} > {log} 2>&1"
