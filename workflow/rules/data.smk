# Data: the tiny world is generated here; every split is then checked record by record (bad ones -> skipped.json).

WORLD = f"{OUT}/data/world"
SPLITS = ["train", "eval_appearance", "eval_temporal", "eval_counting"]


rule world:
    output:
        splits=expand(f"{WORLD}/{{split}}.json", split=SPLITS),
        videos=directory(f"{WORLD}/videos"),
    params:
        cfg=cfg("seed", "world"),
    log:
        f"{OUT}/logs/world.log",
    shell:
        "videoktr world --cfg {params.cfg:q} --out {WORLD} > {log} 2>&1"


rule prepare_split:
    input:
        records=f"{WORLD}/{{split}}.json",
        videos=f"{WORLD}/videos",
    output:
        records=f"{OUT}/data/clean/{{split}}.json",
        skipped=f"{OUT}/data/clean/{{split}}.skipped.json",
    params:
        cfg=cfg("data", "video"),
    log:
        f"{OUT}/logs/prepare_{{split}}.log",
    shell:
        "videoktr prepare --cfg {params.cfg:q} --records {input.records} --data-dir {WORLD}"
        " --out {output.records} --skipped {output.skipped} > {log} 2>&1"
