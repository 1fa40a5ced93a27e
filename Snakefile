# videoktr: the Video-KTR study as one DAG.
#   data -> SFT model -> difficulty filter -> RL runs (config `runs`) -> evaluation -> tables
# The default config is the embedded tiny world (CPU, minutes); config/paper.yaml is the paper-scale study.
from snakemake.logging import logger

from videoktr.config import ConfigError, check_config_files, required_missing, validate as validate_config


# The tiny world when no config file is given, and under config files that are an overlay, not a whole config (they
# lack run_name, runs or eval): `--configfile my.yaml` alone is my.yaml over config/config.yaml. Not under a whole
# config: the job steps a cluster executor spawns get the profile's config files (--configfiles) but not
# --replace-workflow-config, so an unconditional default would be merged under config/paper.yaml inside every SLURM
# job (the tiny world's sft_models leaking into the paper study).
_overlay = workflow.config_settings.configfiles and required_missing(config)
if not workflow.config_settings.configfiles or _overlay:
    if _overlay:
        logger.info(f"videoktr: the config file(s) given lack {', '.join(_overlay)}: read as an overlay of "
                    "config/config.yaml (the tiny world); over the paper study: --configfile config/paper.yaml "
                    "my.yaml")

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


# A second snakemake while one runs here: say what works before Snakemake suggests --rerun-incomplete (it checks for
# incomplete outputs before it takes the lock). Not in a job step, which runs under the snakemake holding the lock.
import sys

from snakemake_interface_executor_plugins.settings import ExecMode
from videoktr.workdir import lock_note

if workflow.exec_mode == ExecMode.DEFAULT and (note := lock_note()):
    print(note, file=sys.stderr)


try:
    check_config_files(workflow.config_settings.configfiles or ["config/config.yaml"])  # a key given twice
    config = validate_config(config)
except ConfigError as e:
    raise WorkflowError(str(e)) from None


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sft.smk"
include: "workflow/rules/filter.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/benchmarks.smk"  # eval.hub: the benchmarks downloaded (bench_records, bench_media)
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/bench.smk"  # a target of its own (minutes): results/<run_name>/bench/attribution.json


rule all:
    input:
        # the eval grid (eval.models x benchmarks x frames), then every table and figure the config's grid names
        expand(f"{OUT}/eval/{{model}}/{{benchmark}}/f{{frames}}.summary.json", model=config["eval"]["models"],
               benchmark=config["eval"]["benchmarks"], frames=config["eval"]["frames"]),
        [target_files(name) for name in grid.configured(config)],
        # the analyses of the token-log run (config analysis.token_log_run), when it is one of the config's runs
        [ATTRIBUTION_SEMANTICS, *[target_files(fig) for fig in TOKEN_FIGURES]] if HAS_TOKEN_LOG else [],
        [TRAINING_SUMMARY] if TRAINED_RUNS else [],
        # the report's first page: Table 1 at a glance
        [f"{OUT}/report/headline.html"] if "table1" in grid.configured(config) else [],
