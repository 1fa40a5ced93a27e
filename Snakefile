# videoktr: the Video-KTR study as one DAG.
#   data -> SFT model -> difficulty filter -> RL runs (config `runs`) -> evaluation -> tables
# The default config is the embedded tiny world (CPU, minutes); config/paper.yaml is the paper-scale study.
from videoktr.config import ConfigError, validate as validate_config


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


try:
    config = validate_config(config)
except ConfigError as e:
    raise WorkflowError(str(e)) from None


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/sft.smk"
include: "workflow/rules/filter.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/bench.smk"  # a target of its own (minutes): results/<run_name>/bench/attribution.json


rule all:
    input:
        # the eval grid (eval.models x benchmarks x frames), then every table and figure the config's grid names
        expand(f"{OUT}/eval/{{model}}/{{benchmark}}/f{{frames}}.summary.json", model=config["eval"]["models"],
               benchmark=config["eval"]["benchmarks"], frames=config["eval"]["frames"]),
        [getattr(rules, name).output for name in grid.configured(config)],
        rules.attribution_semantics.output if "ktr" in config["runs"] else [],
        [r.output for r in (rules.fig2_key_tokens, rules.fig4_pos, rules.fig5_overlap, rules.fig6_wordclouds,
                            rules.fig11_gradients, rules.fig12_positions)] if "ktr" in config["runs"] else [],
