# The SFT models, one per name in SFT_MODELS (`sft` = config model; config sft_models adds others, e.g. a second model
# size for Table 5), each in models/<name>; a run starts from runs.<run>.sft_model. All come from model.source:
# `tiny`: a tiny Qwen2.5-VL built here (models/<name>.init) and fine-tuned on think/answer targets;
# `hub`: a released checkpoint (model.hub / sft_models.<name>.hub, pinned revision; or its mirror), fetched on the
# submit host into models/.download/<name> (outside the rule output, so an interrupted download resumes) and linked
# file by file into models/<name>.

SFT_NAMES = "|".join(SFT_MODELS)

if config["model"]["source"] == "hub":

    localrules: sft

    rule sft:
        input:
            PREFLIGHT,
        output:
            directory(f"{OUT}/models/{{sft}}"),
        wildcard_constraints:
            sft=SFT_NAMES,
        params:
            cfg=lambda w: model_hub_cfg(w.sft),
            files=lambda w: f"{OUT}/models/.download/{w.sft}",
        threads: 1
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/sft/{{sft}}.log",
        shell:
            "videoktr fetch --cfg {params.cfg:q} --what model --download-dir {params.files}"
            " --out {output} --manifest {output}/hub_manifest.json > {log} 2>&1"

else:

    rule base_model:
        input:
            f"{OUT}/data/clean/train.json",
        output:
            directory(f"{OUT}/models/{{sft}}.init"),
        wildcard_constraints:
            sft=SFT_NAMES,
        params:
            cfg=lambda w: model_cfg(w.sft, "seed", "video"),
        threads: 1
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/sft/{{sft}}.init.log",
        shell:
            "videoktr build-model --cfg {params.cfg:q} --records {input} --out {output} > {log} 2>&1"

    rule sft:
        input:
            model=f"{OUT}/models/{{sft}}.init",
            videos=VIDEOS,
            records=f"{OUT}/data/clean/train.json",
        output:
            directory(f"{OUT}/models/{{sft}}"),
        wildcard_constraints:
            sft=SFT_NAMES,
        params:
            data_dir=data_dir,
            cfg=cfg("seed", "sft", "video"),
        threads: 1
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/sft/{{sft}}.log",
        shell:
            "videoktr sft --cfg {params.cfg:q} --model {input.model} --records {input.records}"
            " --data-dir {params.data_dir} --out {output} > {log} 2>&1"
