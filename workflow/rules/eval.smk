# Evaluation: one job per (model, benchmark, frames) for every benchmark registered in videoktr.eval.benchmarks;
# predictions are appended as they are made (resumable), the summary is computed from them.
#   tiny_*     : records results/<run>/data/clean/eval_*.json (and eval_*.skipped.json: the records its check
#                dropped), clips from the generated world (rule world)
#   the others : the released files under config eval.data_dir in their published layout
#                (videoktr.eval.benchmarks.eval_paths; eval.files.<name>.records / .media override it), or, for
#                a benchmark of eval.hub, downloaded by the DAG (benchmarks.smk) and read where it landed
import os


rule evaluate:
    input:
        model=f"{OUT}/models/{{model}}",
        # a benchmark of eval.hub: its download's manifests (rules bench_records, bench_media: the files stay in their
        # published layout under data/benchmarks/<name>/files/); the others: the records file or folder itself
        records=lambda w: [] if w.benchmark in BENCH_HUB else eval_paths(w.benchmark, config["eval"], out=OUT,
                                                                          world=WORLD)[0],
        hub=lambda w: bench_hub_inputs(w.benchmark),
        # tiny splits: the records prepare_split dropped (<split>.skipped.json beside <split>.json); `videoktr
        # evaluate` reads it from beside the records and lists them in the summary (skipped_ids)
        skipped=lambda w: (
            os.path.splitext(eval_paths(w.benchmark, config["eval"], out=OUT, world=WORLD)[0])[0] + ".skipped.json"
            if BENCHMARKS[w.benchmark].tiny_split
            else []
        ),
        # the clips' folder; image benchmarks embed their images in the records file
        media=lambda w: (
            VIDEOS
            if BENCHMARKS[w.benchmark].tiny_split
            else eval_paths(w.benchmark, config["eval"], out=OUT, world=WORLD)[1]
            if BENCHMARKS[w.benchmark].media and w.benchmark not in BENCH_HUB
            else []
        ),
    output:
        summary=f"{OUT}/eval/{{model}}/{{benchmark}}/f{{frames}}.summary.json",
    wildcard_constraints:
        benchmark="|".join(BENCHMARKS),
        frames=r"\d+",
    params:
        records=lambda w: eval_paths(w.benchmark, config["eval"], out=OUT, world=WORLD)[0],
        data_dir=lambda w: eval_paths(w.benchmark, config["eval"], out=OUT, world=WORLD)[1],
        cfg=lambda w: eval_job_cfg(w.benchmark),
        predictions=lambda w: f"{OUT}/eval/{w.model}/{w.benchmark}/f{w.frames}.jsonl",
    threads: 1
    conda:
        "../../envs/eval.yaml"
    log:
        f"{OUT}/logs/eval_{{model}}_{{benchmark}}_f{{frames}}.log",
    shell:
        "videoktr evaluate --cfg {params.cfg:q} --model {input.model} --name {wildcards.model}"
        " --benchmark {wildcards.benchmark} --records {params.records:q} --data-dir {params.data_dir:q}"
        " --frames {wildcards.frames} --predictions {params.predictions} --out {output.summary} > {log} 2>&1"
