# Difficulty filter: k samples per training question from the SFT model; keep accuracy in [low, high].
# Scatter/gather: `filter.shards` jobs each score every shards-th question (transformers on CPU, vLLM on a GPU:
# filter.backend); a shard appends to shards/<i>.partial.jsonl as it goes (not a rule output, so a killed or
# preempted shard resumes there) and ends with shards/<i>.jsonl. The gather merges them into accuracy.jsonl, the
# kept questions (train.json) and a histogram of per-question accuracy (PNG + CSV).

FILTERED = f"{OUT}/data/filtered"


rule filter_shard:
    input:
        model=f"{OUT}/models/sft",
        videos=VIDEOS,
        records=f"{OUT}/data/clean/train.json",
    output:
        scores=ensure(f"{FILTERED}/shards/{{shard}}.jsonl", non_empty=True),
    wildcard_constraints:
        shard=r"\d+",
    params:
        data_dir=data_dir,
        # low/high act in the gather only: changing the band does not resample
        cfg=json.dumps({"seed": config["seed"], "video": config["video"],
                        "filter": {k: v for k, v in config["filter"].items() if k not in ("low", "high")}},
                       sort_keys=True),
        partial=lambda w: f"{FILTERED}/shards/{w.shard}.partial.jsonl",
    threads: 1
    conda:
        "../../envs/eval.yaml"
    log:
        f"{OUT}/logs/filter_shard_{{shard}}.log",
    shell:
        "videoktr filter-shard --cfg {params.cfg:q} --model {input.model} --records {input.records}"
        " --data-dir {params.data_dir} --shard {wildcards.shard} --partial {params.partial}"
        " --out {output.scores} > {log} 2>&1"


rule difficulty_filter:
    input:
        records=f"{OUT}/data/clean/train.json",
        shards=expand(f"{FILTERED}/shards/{{shard}}.jsonl", shard=range(config["filter"]["shards"])),
    output:
        kept=ensure(FILTERED_TRAIN, non_empty=True),
        scores=f"{FILTERED}/accuracy.jsonl",
        png=f"{FILTERED}/accuracy_histogram.png",
        csv=f"{FILTERED}/accuracy_histogram.csv",
    params:
        cfg=cfg("seed", "filter"),
    threads: 1
    conda:
        "../../envs/eval.yaml"
    log:
        f"{OUT}/logs/filter.log",
    shell:
        "videoktr filter-gather --cfg {params.cfg:q} --records {input.records} --shards {input.shards}"
        " --scores {output.scores} --png {output.png} --csv {output.csv} --out {output.kept} > {log} 2>&1"
