# Evaluation: one job per (model, benchmark, frames); predictions are appended as they are made (resumable).

BENCHMARK_SPLIT = {
    "tiny_appearance": "eval_appearance",
    "tiny_temporal": "eval_temporal",
    "tiny_counting": "eval_counting",
}


rule evaluate:
    input:
        model=f"{OUT}/models/{{model}}",
        videos=rules.world.output.videos,
        records=lambda w: f"{OUT}/data/clean/{BENCHMARK_SPLIT[w.benchmark]}.json",
    output:
        summary=f"{OUT}/eval/{{model}}/{{benchmark}}/f{{frames}}.summary.json",
    wildcard_constraints:
        benchmark="|".join(BENCHMARK_SPLIT),
        frames=r"\d+",
    params:
        data_dir=data_dir,
        cfg=cfg("seed", "eval", "video"),
        predictions=lambda w: f"{OUT}/eval/{w.model}/{w.benchmark}/f{w.frames}.jsonl",
    conda:
        "../../envs/eval.yaml"
    log:
        f"{OUT}/logs/eval_{{model}}_{{benchmark}}_f{{frames}}.log",
    shell:
        "videoktr evaluate --cfg {params.cfg:q} --model {input.model} --name {wildcards.model}"
        " --benchmark {wildcards.benchmark} --records {input.records} --data-dir {params.data_dir}"
        " --frames {wildcards.frames} --predictions {params.predictions} --out {output.summary} > {log} 2>&1"
