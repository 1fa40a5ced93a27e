# Attribution-cost benchmark (docs/design.md, "Attribution cost"; a target, never a timed test): a Video-KTR step
# against a vanilla GRPO step, side by side in one process on identical batches, over frames and completion lengths.
# The sweep and the benchmark model's size live here, not in the config: the config schema has no `bench` section.
# The SFT model gives the tokenizer and processor; the benchmark times a random-init model of BENCH_MODEL's size
# built from them (at the tiny config's size, hidden 64, generation and framework overhead hide everything else).

BENCH_STEPS = 4  # per run, the first a warm-up
BENCH_FRAMES = [16, 32, 64]
BENCH_LENGTHS = [48, 96, 192]  # the first is train.max_completion_length of the tiny config
BENCH_MODEL = "hidden_size=256,layers=4,heads=4,vision_hidden=64"


rule bench_attribution:
    input:
        model=f"{OUT}/models/sft",
        videos=VIDEOS,
        records=FILTERED_TRAIN,
    output:
        json=f"{OUT}/bench/attribution.json",
        png=f"{OUT}/bench/attribution.png",
    params:
        data_dir=data_dir,
        cfg=cfg("seed", "video", "train", "runs"),
        steps=BENCH_STEPS,
        frames=" ".join(map(str, BENCH_FRAMES)),
        lengths=" ".join(map(str, BENCH_LENGTHS)),
        size=BENCH_MODEL,
    threads: 1  # torch threads: `videoktr bench` sets one (--threads, default 1)
    conda:
        "../../envs/train.yaml"
    log:
        f"{OUT}/logs/bench_attribution.log",
    shell:
        "videoktr bench --cfg {params.cfg:q} --model {input.model} --records {input.records}"
        " --data-dir {params.data_dir} --out {output.json} --steps {params.steps} --frames {params.frames}"
        " --completion-lengths {params.lengths} --model-size {params.size} > {log} 2>&1"
