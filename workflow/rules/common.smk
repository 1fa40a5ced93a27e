import json
import os

RUN = config["run_name"]
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


def hub_cfg(section, name=None):
    """JSON of one hub source (repo, revision, files, sha256), the mirror folder and the retries."""
    sec = config[section]
    source = dict(sec["hub"][name] if name else sec["hub"], config_key=f"{section}.hub" + (f".{name}" if name else ""))
    return json.dumps({"source": source, "mirror": sec["mirror"], "retries": sec["retries"]}, sort_keys=True)
