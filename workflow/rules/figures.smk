# The paper's figures. Each writes {OUT}/figures/figN.png, .pdf and .csv (the numbers plotted); the PNG goes into
# `snakemake --report` with the caption workflow/report/figN.rst.
#   Figs. 2, 4, 5, 6, 11, 12: from the `ktr` run's token log and gradient diagnostics (Fig. 2 also .html);
#   Figs. 3a, 3b, 7, 8, 9, 10: from the evaluations of their own rows (videoktr.report.grid, config `tables`; report.smk).

FIGURES = f"{OUT}/figures"
# The config is validated with the schema's defaults filled in: read it directly.
SPACY_MODEL = config["analysis"]["spacy_model"]
POS_MAX = config["analysis"]["pos_max_completions"]
POS_ARGS = f"--spacy-model {SPACY_MODEL}" + (f" --max-completions {POS_MAX}" if POS_MAX else "")


rule fig2_key_tokens:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=report(f"{FIGURES}/fig2.png", caption="../report/fig2.rst", category="Figures"),
        pdf=f"{FIGURES}/fig2.pdf",
        csv=f"{FIGURES}/fig2.csv",
        html=f"{FIGURES}/fig2.html",
    params:
        token_log=lambda w, input: os.path.join(os.path.dirname(input.metrics), "token_log"),
        stem=lambda w, output: os.path.splitext(output.csv)[0],
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/fig2.log",
    shell:
        "python -m videoktr.report.figures fig2 --token-log {params.token_log} --out {params.stem} > {log} 2>&1"


rule fig4_pos:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=report(f"{FIGURES}/fig4.png", caption="../report/fig4.rst", category="Figures"),
        pdf=f"{FIGURES}/fig4.pdf",
        csv=f"{FIGURES}/fig4.csv",
    params:
        token_log=lambda w, input: os.path.join(os.path.dirname(input.metrics), "token_log"),
        stem=lambda w, output: os.path.splitext(output.csv)[0],
        pos=POS_ARGS,
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/fig4.log",
    shell:
        "python -m videoktr.report.figures fig4 --token-log {params.token_log} --out {params.stem} {params.pos} > {log} 2>&1"


rule fig5_overlap:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=report(f"{FIGURES}/fig5.png", caption="../report/fig5.rst", category="Figures"),
        pdf=f"{FIGURES}/fig5.pdf",
        csv=f"{FIGURES}/fig5.csv",
    params:
        token_log=lambda w, input: os.path.join(os.path.dirname(input.metrics), "token_log"),
        stem=lambda w, output: os.path.splitext(output.csv)[0],
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/fig5.log",
    shell:
        "python -m videoktr.report.figures fig5 --token-log {params.token_log} --out {params.stem} > {log} 2>&1"


rule fig6_wordclouds:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=report(f"{FIGURES}/fig6.png", caption="../report/fig6.rst", category="Figures"),
        pdf=f"{FIGURES}/fig6.pdf",
        csv=f"{FIGURES}/fig6.csv",
    params:
        token_log=lambda w, input: os.path.join(os.path.dirname(input.metrics), "token_log"),
        stem=lambda w, output: os.path.splitext(output.csv)[0],
        pos=POS_ARGS,
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/fig6.log",
    shell:
        "python -m videoktr.report.figures fig6 --token-log {params.token_log} --out {params.stem} {params.pos} > {log} 2>&1"


rule fig11_gradients:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=report(f"{FIGURES}/fig11.png", caption="../report/fig11.rst", category="Figures"),
        pdf=f"{FIGURES}/fig11.pdf",
        csv=f"{FIGURES}/fig11.csv",
    params:
        gradients=lambda w, input: os.path.join(os.path.dirname(input.metrics), "gradients.csv"),
        stem=lambda w, output: os.path.splitext(output.csv)[0],
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/fig11.log",
    shell:
        "python -m videoktr.report.figures fig11 --gradients {params.gradients} --out {params.stem} > {log} 2>&1"


rule fig12_positions:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=report(f"{FIGURES}/fig12.png", caption="../report/fig12.rst", category="Figures"),
        pdf=f"{FIGURES}/fig12.pdf",
        csv=f"{FIGURES}/fig12.csv",
    params:
        token_log=lambda w, input: os.path.join(os.path.dirname(input.metrics), "token_log"),
        stem=lambda w, output: os.path.splitext(output.csv)[0],
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/fig12.log",
    shell:
        "python -m videoktr.report.figures fig12 --token-log {params.token_log} --out {params.stem} > {log} 2>&1"


rule fig3a:
    input:
        summaries=grid.summary_input(config, "fig3a", OUT),
        reference=REFERENCE,
    output:
        png=report(f"{FIGURES}/fig3a.png", caption="../report/fig3a.rst", category="Figures"),
        pdf=f"{FIGURES}/fig3a.pdf",
        csv=f"{FIGURES}/fig3a.csv",
    params:
        cfg=GRID_CFG,
        stem=lambda w, output: os.path.splitext(output.csv)[0],
        name=lambda w, output: os.path.basename(os.path.splitext(output.csv)[0]),  # fig3a and each `use rule`
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/figures/fig3a.log",
    shell:
        "python -m videoktr.report.figures {params.name} --cfg {params.cfg:q} --summaries {input.summaries}"
        " --reference {input.reference:q} --out {params.stem} > {log} 2>&1"


use rule fig3a as fig3b with:
    input:
        summaries=grid.summary_input(config, "fig3b", OUT),
        reference=REFERENCE,
    output:
        png=report(f"{FIGURES}/fig3b.png", caption="../report/fig3b.rst", category="Figures"),
        pdf=f"{FIGURES}/fig3b.pdf",
        csv=f"{FIGURES}/fig3b.csv",
    log:
        f"{OUT}/logs/figures/fig3b.log",


use rule fig3a as fig7 with:
    input:
        summaries=grid.summary_input(config, "fig7", OUT),
        reference=REFERENCE,
    output:
        png=report(f"{FIGURES}/fig7.png", caption="../report/fig7.rst", category="Figures"),
        pdf=f"{FIGURES}/fig7.pdf",
        csv=f"{FIGURES}/fig7.csv",
    log:
        f"{OUT}/logs/figures/fig7.log",


use rule fig3a as fig8 with:
    input:
        summaries=grid.summary_input(config, "fig8", OUT),
        reference=REFERENCE,
    output:
        png=report(f"{FIGURES}/fig8.png", caption="../report/fig8.rst", category="Figures"),
        pdf=f"{FIGURES}/fig8.pdf",
        csv=f"{FIGURES}/fig8.csv",
    log:
        f"{OUT}/logs/figures/fig8.log",


use rule fig3a as fig9 with:
    input:
        summaries=grid.summary_input(config, "fig9", OUT),
        reference=REFERENCE,
    output:
        png=report(f"{FIGURES}/fig9.png", caption="../report/fig9.rst", category="Figures"),
        pdf=f"{FIGURES}/fig9.pdf",
        csv=f"{FIGURES}/fig9.csv",
    log:
        f"{OUT}/logs/figures/fig9.log",


use rule fig3a as fig10 with:
    input:
        summaries=grid.summary_input(config, "fig10", OUT),
        reference=REFERENCE,
    output:
        png=report(f"{FIGURES}/fig10.png", caption="../report/fig10.rst", category="Figures"),
        pdf=f"{FIGURES}/fig10.pdf",
        csv=f"{FIGURES}/fig10.csv",
    log:
        f"{OUT}/logs/figures/fig10.log",
