# Data. `data.source: tinyworld` generates the tiny world here; `data.source: hub` downloads the paper's datasets
# (config data.hub: Video-R1-260k + the Video-Holmes train set, pinned revisions; or a local mirror, data.mirror) and
# converts them to the same record format. Either way rule `world` yields `train.json` (+ the tiny eval splits) and
# the clips' folder `videos/`, and every split is then checked record by record (bad ones -> skipped.json).

HUB_DATA = config["data"]["source"] == "hub"
SPLITS = ["train"] if HUB_DATA else ["train", "eval_appearance", "eval_temporal", "eval_counting"]
HUB = f"{OUT}/data/hub"


if PREFLIGHT:

    # GPU parts (vLLM in filtering, evaluation or training; DeepSpeed) checked on a GPU node before any long job:
    # the downloads wait for it, so a study that cannot run stops within minutes with one line.
    rule preflight:
        output:
            PREFLIGHT,
        params:
            cfg=json.dumps({"filter": {"backend": config["filter"]["backend"]},
                            "eval": {"backend": config["eval"]["backend"]},
                            "train": {k: config["train"][k] for k in ("deepspeed", "use_vllm")},
                            "runs": {n: {"train": {k: r["train"][k] for k in ("deepspeed", "use_vllm")}}
                                     for n, r in config["runs"].items()}}, sort_keys=True),
        threads: 1
        conda:
            "../../envs/eval.yaml"  # the env with vLLM (the filter and eval rules'); deepspeed: see videoktr.preflight
        log:
            f"{OUT}/logs/preflight.log",
        shell:
            "videoktr preflight --cfg {params.cfg:q} --out {output} > {log} 2>&1"


if HUB_DATA:

    # Downloads run on the submit host (compute nodes are often offline); the files land under
    # data/hub/<name>/files/, outside the rule outputs, so a failed or killed download resumes where it stopped.
    localrules: hub_records, hub_media

    rule hub_records:
        input:
            PREFLIGHT,
        output:
            records=ensure(f"{HUB}/{{dataset}}/records.json", non_empty=True),
            manifest=ensure(f"{HUB}/{{dataset}}/records.manifest.json", non_empty=True),
        wildcard_constraints:
            dataset="|".join(config["data"]["hub"]),
        params:
            cfg=lambda w: data_hub_cfg(w.dataset),
            files=lambda w: f"{HUB}/{w.dataset}/files",
        threads: 1
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/hub_records_{{dataset}}.log",
        shell:
            "videoktr fetch --cfg {params.cfg:q} --what records --download-dir {params.files}"
            " --out {output.records} --manifest {output.manifest} > {log} 2>&1"

    rule hub_media:
        input:
            PREFLIGHT,
            records=f"{HUB}/{{dataset}}/records.json",  # the hub answered (access, token) before the long download
        output:
            manifest=ensure(f"{HUB}/{{dataset}}/media.manifest.json", non_empty=True),
        wildcard_constraints:
            dataset="|".join(config["data"]["hub"]),
        params:
            cfg=lambda w: data_hub_cfg(w.dataset),
            files=lambda w: f"{HUB}/{w.dataset}/files",
        threads: 1
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/hub_media_{{dataset}}.log",
        shell:
            "videoktr fetch --cfg {params.cfg:q} --what media --download-dir {params.files}"
            " --out {params.files} --manifest {output.manifest} > {log} 2>&1"

    rule world:
        input:
            records=expand(f"{HUB}/{{dataset}}/records.json", dataset=config["data"]["hub"]),
            media=expand(f"{HUB}/{{dataset}}/media.manifest.json", dataset=config["data"]["hub"]),
        output:
            splits=ensure(f"{WORLD}/train.json", non_empty=True),
            videos=directory(f"{WORLD}/videos"),
        params:
            cfg=json.dumps({"data": {"hub": config["data"]["hub"]}}, sort_keys=True),  # what hub-records reads
            hub=HUB,
        threads: 1
        conda:
            "../../envs/train.yaml"
        log:
            f"{OUT}/logs/world.log",
        shell:
            "videoktr hub-records --cfg {params.cfg:q} --hub-dir {params.hub} --out {output.splits}"
            " --videos {output.videos} > {log} 2>&1"

else:

    rule world:
        output:
            splits=expand(f"{WORLD}/{{split}}.json", split=SPLITS),
            videos=directory(f"{WORLD}/videos"),
        params:
            data_dir=lambda w, output: os.path.dirname(output.videos),
            cfg=cfg("seed", "world"),
        threads: 1
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
    threads: 1
    conda:
        "../../envs/train.yaml"
    log:
        f"{OUT}/logs/prepare_{{split}}.log",
    shell:
        "videoktr prepare --cfg {params.cfg:q} --records {input.records} --data-dir {params.data_dir}"
        " --out {output.records} --skipped {output.skipped} > {log} 2>&1"
