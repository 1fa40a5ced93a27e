# The evaluation benchmarks of config eval.hub, downloaded by the DAG as the training data is (data.smk's hub rules):
# each at its revision (a commit pins it; a branch is accepted with a warning and the commit it resolved to goes to the
# manifest), sizes and sha256 checked (the hub's LFS digests and any in the config), retried, resumed, a manifest per
# download; eval.mirror reads a local copy (<mirror>/<repo>/<file>) instead. Without hub access they stop at once
# with one line. The files stay in their published layout under results/<run>/data/benchmarks/<name>/files/ (outside
# the rule outputs, so an interrupted download resumes); the evaluations of a benchmark read them from there
# (videoktr.eval.benchmarks.eval_paths) and wait for its manifests.
#   bench_records  the records file(s): the JSON or parquet the benchmark's loader reads
#   bench_media    the clips (video benchmarks): files or zips, unpacked where they lie; an unreadable zip is named in
#                  one line and counted in the manifest (bad_archives), and the questions on its clips count as errors
if BENCH_HUB:

    # on the submit host, as the other downloads (compute nodes are often offline)
    localrules: bench_records, bench_media

    rule bench_records:
        input:
            PREFLIGHT,
        output:
            manifest=ensure(f"{OUT}/data/benchmarks/{{bench}}/records.manifest.json", non_empty=True),
        wildcard_constraints:
            bench="|".join(BENCH_HUB),
        params:
            cfg=lambda w: bench_hub_cfg(w.bench),
            files=lambda w: f"{_bench_hub_dir(w.bench, OUT)}/files",
            records=lambda w: eval_paths(w.bench, config["eval"], out=OUT, world=WORLD)[0],
        threads: 1
        conda:
            "../../envs/eval.yaml"
        log:
            f"{OUT}/logs/bench_records_{{bench}}.log",
        shell:
            "videoktr fetch --cfg {params.cfg:q} --what bench-records --download-dir {params.files}"
            " --out {params.records:q} --manifest {output.manifest} > {log} 2>&1"

if BENCH_HUB_MEDIA:

    rule bench_media:
        input:
            PREFLIGHT,
            records=f"{OUT}/data/benchmarks/{{bench}}/records.manifest.json",  # the hub answered first
        output:
            manifest=ensure(f"{OUT}/data/benchmarks/{{bench}}/media.manifest.json", non_empty=True),
        wildcard_constraints:
            bench="|".join(BENCH_HUB_MEDIA),
        params:
            cfg=lambda w: bench_hub_cfg(w.bench),
            files=lambda w: f"{_bench_hub_dir(w.bench, OUT)}/files",
            media=lambda w: eval_paths(w.bench, config["eval"], out=OUT, world=WORLD)[1],
        threads: 1
        conda:
            "../../envs/eval.yaml"
        log:
            f"{OUT}/logs/bench_media_{{bench}}.log",
        shell:
            "videoktr fetch --cfg {params.cfg:q} --what bench-media --download-dir {params.files}"
            " --out {params.media:q} --manifest {output.manifest} > {log} 2>&1"
