# RL training, one job per named run in config `runs` (a method plus overrides of `train`), each from its SFT model
# (runs.<run>.sft_model). Every run trains on the study's filtered set (made with the `sft` model).


rule train:
    input:
        model=lambda w: f"{OUT}/models/{config['runs'][w.run]['sft_model']}",
        videos=VIDEOS,
        records=FILTERED_TRAIN,
    output:
        model=directory(f"{OUT}/models/{{run}}"),
        metrics=f"{OUT}/train/{{run}}/metrics.json",
    wildcard_constraints:
        run="|".join(config["runs"]),
    params:
        launch=LAUNCH,
        data_dir=data_dir,
        cfg=lambda w: json.dumps({"seed": config["seed"], "video": config["video"], "run": config["runs"][w.run]},
                                 sort_keys=True),
        work=lambda w: f"{OUT}/train/{w.run}",
    threads: 1
    resources:
        # a later try of a finished run (profile retries, a SLURM requeue) restores it: videoktr.rl.finished
        attempt=lambda w, attempt: attempt,
    conda:
        "../../envs/train.yaml"
    log:
        f"{OUT}/logs/train_{{run}}.log",
    shell:
        "{params.launch:q} train --cfg {params.cfg:q} --name {wildcards.run} --model {input.model}"
        " --records {input.records} --data-dir {params.data_dir} --work-dir {params.work}"
        " --out {output.model} --metrics {output.metrics} --attempt {resources.attempt} > {log} 2>&1"
