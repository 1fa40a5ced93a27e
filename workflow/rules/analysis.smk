# Analyses of the token log of the token-log run (config analysis.token_log_run), a Video-KTR run.


rule attribution_semantics:
    input:
        metrics=TOKEN_LOG_METRICS,
    output:
        ATTRIBUTION_SEMANTICS,
    params:
        token_log=lambda w, input: os.path.join(os.path.dirname(input.metrics), "token_log"),
    threads: 1
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/attribution_semantics.log",
    shell:
        "videoktr semantics --token-log {params.token_log} --out {output} > {log} 2>&1"
