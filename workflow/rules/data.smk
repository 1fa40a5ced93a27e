# Data: the tiny world is generated here; every split is then checked record by record (bad ones -> skipped.json).

SPLITS = ["train", "eval_appearance", "eval_temporal", "eval_counting"]


rule world:
    output:
        splits=expand(f"{WORLD}/{{split}}.json", split=SPLITS),
        videos=directory(f"{WORLD}/videos"),
    params:
        data_dir=lambda w, output: os.path.dirname(output.videos),
        cfg=cfg("seed", "world"),
    conda:
        "../../envs/train.yaml"
    log:
        f"{OUT}/logs/world.log",
    shell:
        "videoktr world --cfg {params.cfg:q} --out {params.data_dir} > {log} 2>&1"


rule prepare_split:
    input:
        records=f"{WORLD}/{{split}}.json",
        videos=f"{WORLD}/videos",
    output:
        records=f"{OUT}/data/clean/{{split}}.json",
        skipped=f"{OUT}/data/clean/{{split}}.skipped.json",
    params:
        data_dir=data_dir,
        cfg=cfg("data", "video"),
    conda:
        "../../envs/train.yaml"
    log:
        f"{OUT}/logs/prepare_{{split}}.log",
    shell:
        "videoktr prepare --cfg {params.cfg:q} --records {input.records} --data-dir {params.data_dir}"
        " --out {output.records} --skipped {output.skipped} > {log} 2>&1"
