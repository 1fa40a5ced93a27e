# The SFT model. `model.source: tiny`: a tiny Qwen2.5-VL built here and fine-tuned on think/answer targets.
# `model.source: hub`: the released CoT-SFT checkpoint (config model.hub, pinned revision; or model.mirror), fetched
# on the submit host into models/.download/sft (outside the rule output, so an interrupted download resumes) and
# linked file by file into models/sft.

if config["model"]["source"] == "hub":

    localrules: sft

    rule sft:
        input:
            PREFLIGHT,
        output:
            directory(f"{OUT}/models/sft"),
        params:
            cfg=lambda w: hub_cfg("model"),
            files=f"{OUT}/models/.download/sft",
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/sft.log",
        shell:
            "videoktr fetch --cfg {params.cfg:q} --what model --download-dir {params.files}"
            " --out {output} --manifest {output}/hub_manifest.json > {log} 2>&1"

else:

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
