# Tables 1-5: each pulls exactly the evaluations (or training logs) of its own rows (videoktr.report.grid, config
# `tables`), and writes CSV, Markdown and LaTeX with the paper's numbers beside ours (config/reference/paper_tables.csv).
# table1_released (Table 1's block of released checkpoints, config `released`) pulls their downloads and evaluations.
# The CSV goes into `snakemake --report`: Tables 1-3 and 5 with the caption workflow/report/table.rst, Table 4 with
# workflow/report/table4.rst.


rule table:  # the accuracy tables: Tables 1, 2, 3, 5, and Table 1's released checkpoints (table1_released)
    input:
        summaries=lambda w: grid.summary_paths(config, w.table, OUT),
        reference=REFERENCE,
        # table1_released: the released checkpoints' folders, for the commit each manifest records
        models=lambda w: [f"{OUT}/models/{n}" for n in RELEASED] if grid.TARGETS[w.table].kind == "released" else [],
    output:
        csv=report(f"{TABLES}/{{table}}.csv", caption="../report/table.rst", category="Tables"),
        md=f"{TABLES}/{{table}}.md",
        tex=f"{TABLES}/{{table}}.tex",
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
        "videoktr table {wildcards.table} --cfg {params.cfg:q} --summaries {input.summaries}"
        " --models {input.models} --reference {input.reference:q} --out {params.stem} > {log} 2>&1"


rule cost_table:  # Table 4: training cost, from the training logs of its runs
    input:
        metrics=lambda w: grid.metrics_paths(config, w.table, OUT),
        reference=REFERENCE,
    output:
        csv=report(f"{TABLES}/{{table}}.csv", caption="../report/table4.rst", category="Tables"),
        md=f"{TABLES}/{{table}}.md",
        tex=f"{TABLES}/{{table}}.tex",
    wildcard_constraints:
        table="|".join(COST_TABLES),
    params:
        cfg=GRID_CFG,
        stem=out_stem,
    threads: 1
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/tables/{{table}}.log",
    shell:
        "videoktr table {wildcards.table} --cfg {params.cfg:q} --metrics {input.metrics}"
        " --reference {input.reference:q} --out {params.stem} > {log} 2>&1"
