# The paper's token-level figures (Figs. 2, 4, 5, 6, 11, 12), from the `ktr` run's token log and gradient diagnostics.
# Each writes {OUT}/figures/figN.png, .pdf and .csv (the numbers plotted); Fig. 2 also .html.

FIGURES = f"{OUT}/figures"
SPACY_MODEL = config.get("analysis", {}).get("spacy_model", "en_core_web_sm")
POS_MAX = config.get("analysis", {}).get("pos_max_completions")
POS_ARGS = f"--spacy-model {SPACY_MODEL}" + (f" --max-completions {POS_MAX}" if POS_MAX else "")


rule fig2_key_tokens:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=f"{FIGURES}/fig2.png",
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
        "python -m videoktr.figures fig2 --token-log {params.token_log} --out {params.stem} > {log} 2>&1"


rule fig4_pos:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=f"{FIGURES}/fig4.png",
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
        "python -m videoktr.figures fig4 --token-log {params.token_log} --out {params.stem} {params.pos} > {log} 2>&1"


rule fig5_overlap:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=f"{FIGURES}/fig5.png",
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
        "python -m videoktr.figures fig5 --token-log {params.token_log} --out {params.stem} > {log} 2>&1"


rule fig6_wordclouds:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=f"{FIGURES}/fig6.png",
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
        "python -m videoktr.figures fig6 --token-log {params.token_log} --out {params.stem} {params.pos} > {log} 2>&1"


rule fig11_gradients:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=f"{FIGURES}/fig11.png",
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
        "python -m videoktr.figures fig11 --gradients {params.gradients} --out {params.stem} > {log} 2>&1"


rule fig12_positions:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        png=f"{FIGURES}/fig12.png",
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
        "python -m videoktr.figures fig12 --token-log {params.token_log} --out {params.stem} > {log} 2>&1"
