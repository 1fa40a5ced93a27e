# The SFT model: in the tiny world a tiny Qwen2.5-VL built here and fine-tuned on think/answer targets.


rule base_model:
    input:
        f"{OUT}/data/clean/train.json",
    output:
        directory(f"{OUT}/models/base"),
    params:
        cfg=cfg("seed", "model", "video"),
    conda:
        "../../envs/train.yaml"
    log:
        f"{OUT}/logs/base_model.log",
    shell:
        "videoktr build-model --cfg {params.cfg:q} --records {input} --out {output} > {log} 2>&1"


rule sft:
    input:
        model=f"{OUT}/models/base",
        videos=rules.world.output.videos,
        records=f"{OUT}/data/clean/train.json",
    output:
        directory(f"{OUT}/models/sft"),
    params:
        data_dir=data_dir,
        cfg=cfg("seed", "sft", "video"),
    conda:
        "../../envs/train.yaml"
    log:
        f"{OUT}/logs/sft.log",
    shell:
        "videoktr sft --cfg {params.cfg:q} --model {input.model} --records {input.records}"
        " --data-dir {params.data_dir} --out {output} > {log} 2>&1"
