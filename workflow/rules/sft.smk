# The SFT models, one per name in SFT_MODELS (`sft` = config model; config sft_models adds others, e.g. a second model
# size for Table 5), each in models/<name>; a run starts from runs.<run>.sft_model. All come from model.source:
# `tiny`: a tiny Qwen2.5-VL built here (models/<name>.init) and fine-tuned on think/answer targets;
# `hub`: a released checkpoint (model.hub / sft_models.<name>.hub, pinned revision; or its mirror), fetched on the
# submit host into models/.download/<name> (outside the rule output, so an interrupted download resumes) and linked
# file by file into models/<name>.

SFT_NAMES = "|".join(SFT_MODELS)
# The hub fetch of one checkpoint (rule sft on the hub path, rule released): `videoktr fetch --what model` into
# models/.download/<name>, linked file by file into models/<name>, with its manifest (repo, commit, sha256 per file).
FETCH_MODEL = ("videoktr fetch --cfg {params.cfg:q} --what model --download-dir {params.files}"
               " --out {output} --manifest {output}/hub_manifest.json > {log} 2>&1")

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
            FETCH_MODEL

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


# Released checkpoints (config `released`), evaluated as they are (target tables/table1_released.md): fetched on the
# submit host (localrules) by the same `videoktr fetch` as the SFT model, into models/<name>; no training. An entry
# with `mirror_from` (the tiny world's release) is fetched from MIRROR/<repo>, where rule released_mirror saved that
# model of the study in the hub's layout (its files at the top of the repository folder).
if RELEASED:

    localrules: released

    rule released:
        input:
            PREFLIGHT,
            mirror=lambda w: f"{MIRROR}/{RELEASED[w.released]['hub']['repo']}/config.json"
            if RELEASED[w.released]["mirror_from"] else [],
        output:
            directory(f"{OUT}/models/{{released}}"),
        wildcard_constraints:
            released="|".join(RELEASED),
        params:
            cfg=lambda w: released_hub_cfg(w.released),
            files=lambda w: f"{OUT}/models/.download/{w.released}",
        threads: 1
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/released/{{released}}.log",
        shell:
            FETCH_MODEL


import re

MIRRORED = {sec["hub"]["repo"]: sec["mirror_from"] for sec in RELEASED.values() if sec["mirror_from"]}
if MIRRORED:

    localrules: released_mirror

    rule released_mirror:
        input:
            lambda w: f"{OUT}/models/{MIRRORED[w.repo]}",
        output:
            # one file of the repository folder stands for it: a directory() output would add Snakemake's marker file
            # to the repository, which `files: ["*"]` would then fetch
            f"{MIRROR}/{{repo}}/config.json",
        wildcard_constraints:
            repo="|".join(re.escape(r) for r in MIRRORED),
        threads: 1
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/released/mirror/{{repo}}.log",
        shell:
            "videoktr mirror-model --model {input:q} --out $(dirname {output:q}) > {log} 2>&1"
