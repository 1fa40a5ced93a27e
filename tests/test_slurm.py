"""profiles/slurm and config/paper.yaml: the paper DAG, the sbatch line of every job, and a run on a real SLURM.

* the whole paper DAG dry-runs through the profile and holds every run of config/paper.yaml (its time is printed);
* the sbatch command of each job, rendered by snakemake-executor-plugin-slurm's own code from the resources the
  dry run resolved, asks for the GPUs, nodes and tasks the study needs (4 nodes x 8 GPUs, one launcher per node, for
  training; one GPU for an evaluation);
* scripts/launch.sh starts one torchrun per node of a multi-node job;
* (slow) a one-node SLURM on this machine (scripts/slurm-local.sh) runs a small part of the tiny DAG through
  `--profile profiles/slurm`, the tiny config replacing the paper config.
"""

import json
import os
import re
import shutil
import subprocess
import time
from types import SimpleNamespace

import pytest
import yaml
from conftest import BIN, ENV, ROOT, workdir

PROFILE = yaml.safe_load((ROOT / "profiles/slurm/config.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())


def snakemake(*args, cwd, env=ENV, timeout=600):
    return subprocess.run([f"{BIN}/snakemake", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def job_counts(text: str) -> dict:
    """The first 'Job stats' table of a dry run, as rule -> count."""
    lines = text.split("Job stats:")[1].splitlines()[3:]
    rows = [line.split() for line in lines[: next(i for i, x in enumerate(lines) if x.startswith("total"))]]
    return {name: int(count) for name, count in rows}


def dry_run_jobs(text: str) -> list[dict]:
    """Each job block of a dry run: rule, wildcards and the resources Snakemake resolved for it."""
    jobs = []
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            jobs.append({"rule": m.group(1), "wildcards": {}, "resources": {}, "input": ""})
            continue
        if line.startswith("    input: ") and jobs:
            jobs[-1]["input"] = line[len("    input: "):]
            continue
        m = re.match(r"^    (wildcards|resources): (.*)$", line)
        if m and jobs:
            for item in m.group(2).split(", "):
                key, _, value = item.partition("=")
                jobs[-1][m.group(1)][key] = int(value) if value.isdigit() else value
    return jobs


class _Resources(dict):
    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def sbatch_line(job: dict) -> str:
    """The sbatch command the SLURM executor plugin builds for a job with these resources (its own functions)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    fake = SimpleNamespace(resources=_Resources(job["resources"]), threads=1, name=job["rule"])
    params = {"run_uuid": "RUN", "slurm_logfile": "LOG", "comment_str": f"rule_{job['rule']}", "account": "",
              "partition": "", "workdir": "/work"}
    settings = SimpleNamespace(requeue=False, no_requeue=False, qos=None, reservation=None)
    return get_submit_command(fake, params, settings=settings) + set_gres_string(fake)


def job_step(job: dict) -> str:
    """What the plugin's job step runs inside the allocation: `srun -n1 ...` around the rule, or (mpi) the rule alone."""
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_gpu_setting, get_node_setting

    fake = SimpleNamespace(resources=_Resources(job["resources"]), threads=1, name=job["rule"])
    if "mpi" in job["resources"]:
        return "RULE"
    return f"srun -n1 {get_cpu_setting(fake, False)} {get_gpu_setting(fake)} {get_node_setting(fake)} RULE"


def flag(line: str, name: str):
    """Value of `--name=V` or `--name V` in a command line (None when absent)."""
    m = re.search(rf"(?:^|\s){re.escape(name)}(?:=|\s+)(\S+)", line)
    return m.group(1) if m else None


# ------------------------------------------------------------------------------------------ the paper DAG (fast)


@pytest.fixture(scope="module")
def paper_dry_run(tmp_path_factory):
    """`snakemake --profile profiles/slurm -n all` in a fresh work dir: nothing placed by hand, as on a fresh clone.

    Every input of the paper DAG comes from a rule: the training data, the SFT models and the evaluation benchmarks
    (config eval.hub) are downloaded by the DAG itself.
    """
    from videoktr.config import validate

    wd = workdir(tmp_path_factory.mktemp("paper"))
    cfg = validate(PAPER)
    start = time.monotonic()
    res = snakemake("--profile", "profiles/slurm", "-n", "all", cwd=wd)
    seconds = time.monotonic() - start
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert sorted(p.name for p in wd.iterdir() if not p.name.startswith(".")) == sorted(
        ["Snakefile", "workflow", "config", "envs", "profiles", "scripts"])  # nothing placed, nothing written
    return SimpleNamespace(seconds=seconds, text=res.stdout + res.stderr, cfg=cfg)


def test_paper_config_validates_and_holds_the_papers_runs():
    from videoktr.config import validate

    cfg = validate(PAPER)
    runs = cfg["runs"]
    ktr = runs["ktr"]
    assert (ktr["method"], ktr["ratio"], ktr["signals"], ktr["weighting"], ktr["distance"]) == (
        "ktr", 0.2, ["E", "V", "T"], "binary", "logprob")
    assert {r["method"] for r in runs.values()} == {"grpo", "tgrpo", "twgrpo", "ktr"}
    # Table 2: every signal subset; Fig. 9: ratios 10..50%; Fig. 7: weightings; Fig. 8: distances; Fig. 10: perturbations
    kt = [r for r in runs.values() if r["method"] == "ktr"]
    assert {frozenset(r["signals"]) for r in kt} >= {frozenset(s) for s in ("E", "V", "T", "VT", "ET", "VE", "EVT")}
    assert {r["ratio"] for r in kt} == {0.1, 0.2, 0.3, 0.4, 0.5}
    assert {r["weighting"] for r in kt} == {"binary", "softmax", "sigmoid", "linear", "exponential"}
    assert {r["distance"] for r in kt} == {"logprob", "l1", "l2", "kl", "js", "cosine", "hellinger"}
    assert {r["visual_perturbation"] for r in kt} == {"zero", "zero_half", "other_clip"}
    assert {r["temporal_perturbation"] for r in kt} == {"shuffle", "reverse", "segment_shuffle"}
    t = cfg["train"]
    assert (t["lr"], t["beta"], t["num_generations"], t["max_completion_length"], t["temperature"]) == (
        2e-6, 0.04, 8, 768, 1.0)
    assert cfg["video"]["train_frames"] == 16 and cfg["video"]["max_pixels"] == 128 * 28 * 28
    assert cfg["eval"]["frames"] == [16, 32, 64] and cfg["eval"]["max_pixels"] == 256 * 28 * 28
    assert (cfg["filter"]["k"], cfg["filter"]["low"], cfg["filter"]["high"]) == (8, 0.2, 0.8)
    # every value carries its source: each key line of paper.yaml has a comment, or sits in a commented block
    text = (ROOT / "config/paper.yaml").read_text().splitlines()
    bare = [line for i, line in enumerate(text) if re.match(r"^\s*\w+: \S", line) and "#" not in line
            and not any("#" in prev for prev in text[max(0, i - 3):i])]
    assert not bare, bare


def test_whole_paper_dag_dry_runs(paper_dry_run):
    counts = job_counts(paper_dry_run.text)
    cfg = paper_dry_run.cfg
    assert counts["train"] == len(cfg["runs"]) == 30
    # the eval grid (Table 1's methods) plus what each table and figure needs of its own rows (videoktr.report.grid):
    # every run is evaluated, the ablations only at the tables' frame count
    from videoktr.report import grid

    assert {m for m, _, _ in grid.all_evaluations(cfg)} == {"sft", *cfg["runs"], *cfg["released"]}
    assert counts["eval_summary"] == len(grid.all_evaluations(cfg))
    # one evaluation job (one vLLM start) per model and frame count
    assert counts["evaluate"] == len(grid.evaluation_jobs(cfg)) == len({(m, f) for m, _, f in grid.all_evaluations(cfg)})
    # two SFT models: the 7B one (model) and Table 5's 3B (sft_models.qwen3b), each fetched once
    assert counts["sft"] == 2
    for rule in ("preflight", "world", "difficulty_filter", "cost_table", "attribution_semantics",
                 "token_figure_html", "training_summary"):
        assert counts[rule] == 1, rule
    # one job per table and figure of a family rule (config tables.rows sets them all in the paper config)
    # (Tables 1, 2, 3, 5 and Table 1's released block; each released checkpoint fetched once by rule released)
    assert (counts["table"], counts["accuracy_figure"], counts["token_figure"]) == (5, 6, 5)
    assert counts["released"] == len(cfg["released"]) == 4
    # the hub path: records and clips of each dataset downloaded (no tiny base model), the filter in shards
    assert counts["hub_records"] == counts["hub_media"] == len(cfg["data"]["hub"]) == 2
    assert "base_model" not in counts and counts["filter_shard"] == cfg["filter"]["shards"]
    # the benchmarks too: every one the grid evaluates (Tables 1-3, 5, figures) is downloaded once, records and (video
    # benchmarks) clips, and each evaluation waits for its benchmark's manifests
    evaluated = {b for _, b, _ in grid.all_evaluations(cfg)}
    video = {b for b in evaluated if b in ("video_holmes", "videommmu", "mmvu", "tempcompass", "videomme")}
    assert evaluated == set(cfg["eval"]["hub"]) and len(evaluated) == 9
    assert (counts["bench_records"], counts["bench_media"]) == (len(evaluated), len(video)) == (9, 5)
    jobs = dry_run_jobs(paper_dry_run.text)
    for job in (j for j in jobs if j["rule"] == "evaluate"):
        for bench in job["wildcards"]["benchmarks"].split("+"):
            assert f"results/paper/data/benchmarks/{bench}/records.manifest.json" in job["input"], job
            assert (f"results/paper/data/benchmarks/{bench}/media.manifest.json" in job["input"]) == (bench in video), job
    # nothing long starts before the GPU preflight and the hub's answer: the downloads wait for both
    text = paper_dry_run.text
    for rule in ("hub_records", "hub_media", "sft", "bench_records", "bench_media"):
        block = text.split(f"rule {rule}:")[1].split("\n\n")[0]
        assert "results/paper/preflight.json" in block.split("output:")[0], (rule, block)
    jobs = dry_run_jobs(paper_dry_run.text)
    trained = {j["wildcards"]["run"]: j for j in jobs if j["rule"] == "train"}
    assert set(trained) == set(cfg["runs"])
    # Table 5's runs start from the 3B model, every other run from the 7B SFT model
    for run, job in trained.items():
        start = "qwen3b" if run in ("grpo_3b", "ktr_3b") else "sft"
        assert f"results/paper/models/{start}," in job["input"] + ",", (run, job["input"])
    assert {j["wildcards"]["sft"] for j in jobs if j["rule"] == "sft"} == {"sft", "qwen3b"}
    assert {r for _, r in cfg["tables"]["rows"]["table5"].items()} == {"grpo_3b", "ktr_3b"}
    # Its duration is a figure, not an assertion (timed tests flake on a shared machine): printed for the log.
    print(f"paper DAG dry run: {paper_dry_run.seconds:.1f} s")


def test_every_paper_job_has_its_resources_in_the_profile(paper_dry_run):
    rules = {j["rule"] for j in dry_run_jobs(paper_dry_run.text)} - {"all"}
    assert rules <= set(PROFILE["set-resources"]), sorted(rules - set(PROFILE["set-resources"]))
    for job in dry_run_jobs(paper_dry_run.text):
        if job["rule"] != "all":
            assert job["resources"]["runtime"] > 0 and job["resources"]["mem_mb"] > 0, job


def test_sbatch_lines_of_the_paper_jobs(paper_dry_run):
    jobs = [j for j in dry_run_jobs(paper_dry_run.text) if j["rule"] != "all"]
    by_rule = {}
    for job in jobs:
        line = sbatch_line(job)
        by_rule.setdefault(job["rule"], []).append(line)
        assert flag(line, "-t") and flag(line, "--mem"), line
        assert "--ntasks-per-gpu" not in line, line  # tasks_per_gpu 0: one launcher per node, never one per GPU
    # training: 4 nodes x 8 GPUs (paper Table 4: 32x H100), one task (launcher) per node, the rule run once (mpi)
    train = [j for j in jobs if j["rule"] == "train"]
    for job, line in zip(train, by_rule["train"]):
        assert (flag(line, "--nodes"), flag(line, "--ntasks"), flag(line, "--gpus")) == ("4", "4", "32"), line
        assert flag(line, "--cpus-per-task") == "64" and flag(line, "--mem") == "480000" and flag(line, "-t") == "720"
        assert job_step(job) == "RULE"  # no `srun -n1` around it: scripts/launch.sh starts one torchrun per node
    # evaluation: one GPU on one node; the job step runs the rule in one task holding that GPU
    evaluate = [j for j in jobs if j["rule"] == "evaluate"]
    for job, line in zip(evaluate, by_rule["evaluate"]):
        assert (flag(line, "--nodes"), flag(line, "--gpus"), flag(line, "--ntasks")) == ("1", "1", None), line
        step = job_step(job)
        assert step.startswith("srun -n1 ") and flag(step, "--gpus") == "1" and flag(step, "--nodes") == "1", step
    for line in by_rule["filter_shard"] + by_rule["preflight"]:  # one GPU each
        assert (flag(line, "--nodes"), flag(line, "--gpus")) == ("1", "1"), line
    # CPU rules: no GPU, one task
    for rule in ("world", "prepare_split", "difficulty_filter", "table", "token_figure"):
        for line in by_rule[rule]:
            assert flag(line, "--gpus") is None and flag(line, "--ntasks") == "1", line


def test_profile_has_the_settings_a_single_node_slurm_needs():
    # a single-node SLURM without accounting (docs/design.md): with accounting off only squeue notices that a job ended
    assert PROFILE["executor"] == "slurm" and PROFILE["configfile"] == "config/paper.yaml"
    assert PROFILE["slurm-status-command"] == "squeue"
    assert PROFILE["slurm-init-seconds-before-status-checks"] <= 10
    assert PROFILE["rerun-incomplete"] is True and PROFILE["retries"] >= 1
    assert PROFILE["replace-workflow-config"] is True


# ---------------------------------------------------------------------------------------------------- launcher


def test_launcher_starts_one_torchrun_per_node(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(
        "#!/bin/sh\n"
        'if [ "$2" = hostnames ]; then printf "gpu01\\ngpu02\\ngpu03\\ngpu04\\n"; '
        'else echo "JobId=$3 JobName=x"; echo "   NumNodes=4 NumCPUs=256 NumTasks=4"; '
        'echo "   NodeList=gpu[01-04]"; fi\n')
    (fake / "scontrol").chmod(0o755)
    env = {**ENV, "PATH": f"{fake}{os.pathsep}{ENV['PATH']}", "VIDEOKTR_LAUNCH_PRINT": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    launch = [str(ROOT / "scripts/launch.sh"), "train", "--name", "ktr"]

    def run(**extra):
        return subprocess.run(launch, env={**env, **extra}, capture_output=True, text=True, check=True).stdout.split()

    multi = run(SLURM_JOB_ID="7", CUDA_VISIBLE_DEVICES="0,1,2,3,4,5,6,7")
    assert multi[:5] == ["srun", "--nodes=4", "--ntasks=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert "--nnodes=4" in multi and "--nproc-per-node=8" in multi and "--rdzv-endpoint=gpu01:29500" in multi
    assert multi[-5:] == ["-m", "videoktr.cli", "train", "--name", "ktr"]
    env["PATH"] = ENV["PATH"]  # no scontrol: not in a SLURM job
    assert run(CUDA_VISIBLE_DEVICES="0,1") == [
        "torchrun", "--standalone", "--nproc-per-node=2", "-m", "videoktr.cli", "train", "--name", "ktr"]
    assert run(VIDEOKTR_GPUS_PER_NODE="0") == ["videoktr", "train", "--name", "ktr"]
    # no GPU, ranks asked for (the rehearsal): torchrun on CPU cores, DeepSpeed's CPU accelerator
    assert run(VIDEOKTR_GPUS_PER_NODE="0", VIDEOKTR_CPU_RANKS="2") == [
        "torchrun", "--standalone", "--nproc-per-node=2", "-m", "videoktr.cli", "train", "--name", "ktr"]


def gpu_job_launcher(tmp_path) -> tuple[list, dict]:
    """launch.sh inside a 4-node job holding 32 GPUs and 64 CPUs per task (scontrol faked); nvidia-smi lists none."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(
        "#!/bin/sh\n"
        'if [ "$2" = hostnames ]; then printf "gpu01\\ngpu02\\ngpu03\\ngpu04\\n"; '
        'else echo "JobId=$3 JobName=x"; echo "   NumNodes=4 NumCPUs=256 NumTasks=4 CPUs/Task=64"; '
        'echo "   TRES=cpu=256,mem=1000G,node=4,billing=256,gres/gpu=32"; echo "   NodeList=gpu[01-04]"; fi\n')
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    env = {**ENV, "PATH": f"{fake}{os.pathsep}{ENV['PATH']}", "VIDEOKTR_LAUNCH_PRINT": "1", "SLURM_JOB_ID": "7"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("VIDEOKTR_GPUS_PER_NODE", None)
    env.pop("SLURMD_NODENAME", None)
    return [str(ROOT / "scripts/launch.sh"), "train", "--name", "ktr"], env


def test_launcher_asks_srun_for_the_jobs_gpus_per_node_and_cpus_per_task(tmp_path):
    launch, env = gpu_job_launcher(tmp_path)
    out = subprocess.run(launch, env={**env, "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, capture_output=True,
                         text=True, check=True).stdout.split()
    step = out[:out.index("torchrun")]
    assert "--gpus-per-node=8" in step and "--cpus-per-task=64" in step, step
    assert "--nproc-per-node=8" in out


def test_launcher_refuses_a_gpu_job_on_a_node_that_shows_no_gpu(tmp_path):
    import socket

    launch, env = gpu_job_launcher(tmp_path)
    out = subprocess.run(launch, env=env, capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and socket.gethostname() in lines[0] and "32 GPU" in lines[0], out.stderr


# ------------------------------------------------------------------------------------------ a real SLURM (slow)


@pytest.mark.slow
def test_tiny_jobs_run_through_the_slurm_profile(tmp_path, slurm_cluster):
    assert shutil.which("sbatch"), "slurm-local.sh start succeeded but sbatch is not on PATH"
    wd = workdir(tmp_path)
    # The tiny world replaces the paper config; small enough for a few minutes on 2 shared cores.
    (wd / "small.yaml").write_text(yaml.safe_dump({
        "world": {"n_train": 64, "n_eval": 8},
        "sft": {"epochs": 1},
        "eval": {"models": ["sft"], "benchmarks": ["tiny_appearance"], "frames": [4], "max_new_tokens": 16},
    }))
    target = "results/tiny/eval/sft/tiny_appearance/f4.summary.json"
    env = {**ENV, **slurm_cluster}
    # The paper's resources do not fit this 2-CPU node: the same kinds of request, scaled down. The evaluation keeps
    # the paper profile's GPU request (one GPU, one launcher), met by the node's placeholder GPU.
    res = snakemake(
        target, "--profile", "profiles/slurm", "--configfile", "config/config.yaml", "small.yaml",
        "--jobs", "2", "--retries", "0",
        "--default-resources", "runtime=15", "mem_mb=2000", "cpus_per_task=1", "nodes=1", "tasks=1",
        "--set-resources", "evaluate:gpu=1", "evaluate:tasks_per_gpu=0",
        cwd=wd, env=env, timeout=900)
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-5000:]
    summary = json.loads((wd / target).read_text())
    assert summary["questions"] == 8 and summary["answered"] == 8, summary
    assert 0.0 <= summary["accuracy"] <= 1.0
    assert not (wd / "results/paper").exists()  # the paper config did not leak in
    # Every job went through sbatch: one SLURM log per job (the profile keeps them), named by the SLURM job id.
    logs = {p.relative_to(wd / ".snakemake/slurm_logs").parts[0]: p
            for p in (wd / ".snakemake/slurm_logs").rglob("*.log")}
    assert set(logs) == {f"rule_{r}" for r in ("world", "prepare_split", "base_model", "sft", "evaluate")}, logs
    job_id = logs["rule_evaluate"].stem
    show = subprocess.run(["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True).stdout
    if show:  # finished jobs stay visible for MinJobAge (300 s in slurm-local.sh's slurm.conf)
        assert "NumNodes=1" in show and re.search(r"gpu[:=]1", show), show
        assert "JobState=COMPLETED" in show, show


def test_a_config_file_alone_is_the_whole_config(tmp_path):
    """A cluster job step gets the profile's --configfile but not --replace-workflow-config: the tiny default must not
    be merged under the paper config there (its sft_models.sft_small would stop every job with a config error)."""
    wd = workdir(tmp_path)
    res = snakemake("results/paper/models/sft", "-n", "--configfile", "config/paper.yaml", cwd=wd)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "sft_small" not in res.stdout + res.stderr
