# Difficulty filter: k samples per training question from the SFT model; keep accuracy in [low, high].


rule difficulty_filter:
    input:
        model=f"{OUT}/models/sft",
        videos=rules.world.output.videos,
        records=f"{OUT}/data/clean/train.json",
    output:
        kept=f"{OUT}/data/filtered/train.json",
        scores=f"{OUT}/data/filtered/accuracy.jsonl",
    params:
        data_dir=data_dir,
        cfg=cfg("seed", "filter", "video"),
    conda:
        "../../envs/eval.yaml"
    log:
        f"{OUT}/logs/filter.log",
    shell:
        "videoktr filter --cfg {params.cfg:q} --model {input.model} --records {input.records}"
        " --data-dir {params.data_dir} --scores {output.scores} --out {output.kept} > {log} 2>&1"
