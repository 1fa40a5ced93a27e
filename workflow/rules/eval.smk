# Evaluation, for every benchmark registered in videoktr.eval.benchmarks:
#   evaluate     one job per (model, frames) for the benchmarks `all` needs of that model at that frame count
#                (videoktr.report.grid.evaluation_jobs): the model is loaded, on the cluster vLLM started, once for
#                all of them. Predictions are appended as they are made (eval/<model>/<benchmark>/f<frames>.jsonl,
#                resumable); eval/<model>/f<frames>.<benchmark+...>.json holds each benchmark's summary.
#   eval_summary each benchmark's summary in a file of its own, eval/<model>/<benchmark>/f<frames>.summary.json: what
#                the tables and figures read. One asked for by its path outside `all`'s grid is evaluated alone.
# Where a benchmark's records and media are:
#   tiny_*     : records results/<run>/data/clean/eval_*.json (and eval_*.skipped.json: the records its check
#                dropped), clips from the generated world (rule world)
#   the others : the released files under config eval.data_dir in their published layout
#                (videoktr.eval.benchmarks.eval_paths; eval.files.<name>.records / .media override it), or, for
#                a benchmark of eval.hub, downloaded by the DAG (benchmarks.smk) and read where it landed
rule evaluate:
    input:
        model=f"{OUT}/models/{{model}}",
        benchmarks=eval_job_inputs,
    output:
        f"{OUT}/eval/{{model}}/f{{frames}}.{{benchmarks}}.json",
    wildcard_constraints:
        model=r"[^/]+",
        frames=r"\d+",
        benchmarks=rf"({BENCHMARK_NAMES})(\+({BENCHMARK_NAMES}))*",
    params:
        plan=eval_plan,
        cfg=lambda w: eval_job_cfg(w.benchmarks.split("+")),
    threads: 1
    conda:
        "../../envs/eval.yaml"
    log:
        f"{OUT}/logs/eval_{{model}}_f{{frames}}.{{benchmarks}}.log",
    shell:
        "videoktr evaluate --cfg {params.cfg:q} --model {input.model} --name {wildcards.model}"
        " --frames {wildcards.frames} --plan {params.plan:q} --out {output} > {log} 2>&1"


localrules: eval_summary


rule eval_summary:
    input:
        eval_job_file,
    output:
        f"{OUT}/eval/{{model}}/{{benchmark}}/f{{frames}}.summary.json",
    wildcard_constraints:
        model=r"[^/]+",
        benchmark=BENCHMARK_NAMES,
        frames=r"\d+",
    threads: 1
    conda:
        "../../envs/eval.yaml"
    log:
        f"{OUT}/logs/eval_{{model}}_{{benchmark}}_f{{frames}}.summary.log",
    shell:
        "videoktr eval-summary --job {input:q} --benchmark {wildcards.benchmark} --out {output} > {log} 2>&1"
