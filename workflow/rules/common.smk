import json
import os

from videoktr.config import sft_models

RUN = config["run_name"]
# The models RL starts from, each built (tiny) or fetched (hub) into models/<name>: `sft` (config model), sft_models.
SFT_MODELS = sft_models(config)
OUT = f"results/{RUN}"
WORLD = f"{OUT}/data/world"
# Starts `videoktr` once per node under SLURM (torchrun across the allocation), plainly elsewhere.
LAUNCH = os.path.join(os.path.dirname(os.path.realpath(workflow.main_snakefile)), "scripts", "launch.sh")


def cfg(*sections):
    """JSON of the config sections a job reads; as a param, a change there reruns just the jobs that read it."""
    return json.dumps({s: config[s] for s in sections}, sort_keys=True)


def data_dir(wildcards, input):
    """Record paths are relative to the folder that holds the clips."""
    return os.path.dirname(input.videos)


def model_section_key(name):
    """The config section of SFT model `name`: model, or sft_models.<name>."""
    return "model" if name == "sft" else f"sft_models.{name}"


def hub_cfg(source, key):
    """JSON of one hub source (repo, revision, files, sha256; config key `key`): what the download is. How the hub is
    reached (mirror, retries) is not a param, so switching to a mirror does not rerun the study: the downloads run
    on this host (localrules) and read it from VIDEOKTR_HUB_ACCESS below."""
    return json.dumps({"source": dict(source, config_key=key)}, sort_keys=True)


# {config section: {mirror, retries}} for `videoktr fetch` (videoktr.cli), in the environment of local jobs
os.environ.update(VIDEOKTR_HUB_ACCESS=json.dumps(
    {section: {"mirror": sec.get("mirror"), "retries": sec.get("retries", 3)}
     for section, sec in [("data", config["data"]), *[(model_section_key(n), s) for n, s in SFT_MODELS.items()]]}))


def data_hub_cfg(dataset):
    return hub_cfg(config["data"]["hub"][dataset], f"data.hub.{dataset}")


def model_hub_cfg(name):
    return hub_cfg(SFT_MODELS[name]["hub"], f"{model_section_key(name)}.hub")


def model_cfg(name, *sections):
    """cfg() with `model` = the section of SFT model `name`."""
    return json.dumps({**{s: config[s] for s in sections}, "model": SFT_MODELS[name]}, sort_keys=True)


def eval_job_cfg(benchmark):
    """What one evaluation reads: the grid's lists (models, benchmarks, frames) and the other benchmarks' protocols
    and files stay out, so adding a model or a frame count does not rerun every evaluation."""
    e = {k: v for k, v in config["eval"].items() if k not in ("models", "benchmarks", "frames", "protocols", "files")}
    for key in ("protocols", "files"):
        mine = (config["eval"].get(key) or {}).get(benchmark)
        if mine is not None:
            e[key] = {benchmark: mine}
    return json.dumps({"seed": config["seed"], "video": config["video"], "eval": e}, sort_keys=True)
