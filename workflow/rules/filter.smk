# Difficulty filter: k samples per training question from the SFT model; keep accuracy in [low, high].


rule difficulty_filter:
    input:
        model=f"{OUT}/models/sft",
        records=f"{OUT}/data/clean/train.json",
    output:
        kept=f"{OUT}/data/filtered/train.json",
        scores=f"{OUT}/data/filtered/accuracy.jsonl",
    params:
        cfg=cfg("seed", "filter", "video"),
    log:
        f"{OUT}/logs/filter.log",
    shell:
        "videoktr filter --cfg {params.cfg:q} --model {input.model} --records {input.records}"
        " --data-dir {WORLD} --scores {output.scores} --out {output.kept} > {log} 2>&1"
