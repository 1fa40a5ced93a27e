# Analyses of the token log of the token-log run (config analysis.token_log_run), a Video-KTR run, and of the RL runs'
# training logs.


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


rule training_summary:
    input:
        [f"{OUT}/train/{run}/metrics.json" for run in TRAINED_RUNS],
    output:
        TRAINING_SUMMARY,
    params:
        cfg=json.dumps({"start": {run: config["runs"][run]["sft_model"] for run in TRAINED_RUNS}}),
    threads: 1
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/training_summary.log",
    shell:
        "videoktr training-summary --cfg {params.cfg:q} --run-metrics {input:q} --out {output} > {log} 2>&1"
