# Analyses of the token logs of a Video-KTR run.


rule attribution_semantics:
    input:
        metrics=f"{OUT}/train/ktr/metrics.json",
    output:
        f"{OUT}/analysis/attribution_semantics.json",
    params:
        token_log=lambda w, input: os.path.join(os.path.dirname(input.metrics), "token_log"),
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/attribution_semantics.log",
    shell:
        "videoktr semantics --token-log {params.token_log} --out {output} > {log} 2>&1"
