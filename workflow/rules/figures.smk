# The paper's figures. Each writes {OUT}/figures/figN.png, .pdf and .csv (the numbers plotted); the PNG goes into
# `snakemake --report` with the caption of its family (workflow/report/accuracy_figure.rst, token_figure.rst).
#   accuracy_figure, Figs. 3a, 3b, 7, 8, 9, 10: from the evaluations of their own rows (videoktr.report.grid,
#     config `tables`);
#   token_figure, Figs. 2, 4, 5, 6, 11, 12: from the token log and gradient diagnostics of the token-log run
#     (config analysis.token_log_run); what each reads and its options: TOKEN_FIGURES (common.smk). Fig. 2 also
#     writes an HTML page (token_figure_html).


rule accuracy_figure:
    input:
        summaries=lambda w: grid.summary_paths(config, w.fig, OUT),
        reference=REFERENCE,
    output:
        png=report(f"{FIGURES}/{{fig}}.png", caption="../report/accuracy_figure.rst", category=report_category),
        pdf=f"{FIGURES}/{{fig}}.pdf",
        csv=f"{FIGURES}/{{fig}}.csv",
    wildcard_constraints:
        fig="|".join(ACCURACY_FIGURES),
    params:
        cfg=lambda w: GRID_CFG,  # a function: a plain string param is re-made as a str (no ReportParam)
        stem=out_stem,
    threads: 1
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/{{fig}}.log",
    shell:
        "videoktr figure {wildcards.fig} --cfg {params.cfg:jsonq} --summaries {input.summaries}"
        " --reference {input.reference:q} --out {params.stem} > {log} 2>&1"


rule token_figure:
    input:
        metrics=TOKEN_LOG_METRICS,
    output:
        png=report(f"{FIGURES}/{{fig}}.png", caption="../report/token_figure.rst", category=report_category),
        pdf=f"{FIGURES}/{{fig}}.pdf",
        csv=f"{FIGURES}/{{fig}}.csv",
    wildcard_constraints:
        fig="|".join(f for f in TOKEN_FIGURES if f not in TOKEN_FIGURES_HTML),
    params:
        args=token_figure_args,
        stem=out_stem,
    threads: 1
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/{{fig}}.log",
    shell:
        "videoktr figure {wildcards.fig} {params.args} --out {params.stem} > {log} 2>&1"


use rule token_figure as token_figure_html with:
    output:
        png=report(f"{FIGURES}/{{fig}}.png", caption="../report/token_figure.rst", category=report_category),
        pdf=f"{FIGURES}/{{fig}}.pdf",
        csv=f"{FIGURES}/{{fig}}.csv",
        html=f"{FIGURES}/{{fig}}.html",
    wildcard_constraints:
        fig="|".join(TOKEN_FIGURES_HTML),
