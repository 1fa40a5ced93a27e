"""Config validation against workflow/schemas/config.schema.yaml, with the schema's defaults filled in.

A typo or a wrong type stops the run with one line naming the key, before any job starts.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import jsonschema
import yaml

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


# results/<run_name>/ must be one folder under results/: no "/", no "." or ".." (nor a hidden or option-like name).
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

# Where the names `eval.models` may give come from: {config section: its model names}. A new kind of model is one
# more entry here. `released`: checkpoints evaluated as they are (fetched into models/<name>, no training).
MODEL_NAMES: dict[str, Callable[[dict], Iterable[str]]] = {
    "sft": lambda config: ["sft"],
    "sft_models": lambda config: config.get("sft_models") or {},
    "runs": lambda config: config["runs"],
    "released": lambda config: config.get("released") or {},
}


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    def fill_additional(validator, additional, instance, schema):
        # Defaults inside `additionalProperties` (the runs grid) are filled too.
        if isinstance(instance, dict) and isinstance(additional, dict):
            known = schema.get("properties", {})
            for name, value in instance.items():
                if name not in known:
                    yield from validator.descend(value, additional, path=name)
        elif additional is False and isinstance(instance, dict):
            extra = sorted(set(instance) - set(schema.get("properties", {})))
            if extra:
                yield jsonschema.ValidationError(f"unknown key {extra[0]!r} (known: {sorted(schema.get('properties', {}))})")

    return jsonschema.validators.extend(
        validator_class, {"properties": set_defaults, "additionalProperties": fill_additional}
    )


def _resolve(node, root: dict) -> dict:
    """A schema node with its `$ref` (a JSON pointer into the schema) followed."""
    while isinstance(node, dict) and "$ref" in node:
        target = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node if isinstance(node, dict) else {}


JSON_TYPES = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}


def _types(node: dict, root: dict) -> set[str]:
    """The JSON types a schema node allows (its `type`, its enum's values, and those of its anyOf/oneOf branches)."""
    kinds = node.get("type", [])
    out = set([kinds] if isinstance(kinds, str) else kinds)
    for value in node.get("enum", []):
        out.add(next((k for k, t in JSON_TYPES.items() if isinstance(value, t) and not (
            k in ("integer", "number") and isinstance(value, bool))), "string"))
    for branch in node.get("anyOf", []) + node.get("oneOf", []):
        out |= _types(_resolve(branch, root), root)
    return out


def coerce(value, node, root: dict):
    """`value` with each string that the schema wants as a number, integer, boolean or null parsed as YAML.

    Snakemake's `--config key=VALUE` reads a dict VALUE with YAML's BaseLoader, every scalar a string
    (`train={"lr": 0.0003}` gives lr '0.0003'); YAML 1.1 reads `3e-4` (no dot) as a string. Where the schema allows
    a string the value is left as it is; a string that does not parse to an allowed type is left for the validator to
    name."""
    node = _resolve(node, root)
    if isinstance(value, dict):
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        return {k: coerce(v, props.get(k, extra if isinstance(extra, dict) else {}), root) for k, v in value.items()}
    if isinstance(value, list):
        items = node.get("items")
        return [coerce(v, items if isinstance(items, dict) else {}, root) for v in value]
    if isinstance(value, str):
        allowed = _types(node, root)
        if allowed and "string" not in allowed:
            try:
                parsed = yaml.safe_load(value)
                if isinstance(parsed, str) and "number" in allowed:
                    parsed = float(value)  # 3e-4
            except (yaml.YAMLError, ValueError):
                return value
            if any(isinstance(parsed, JSON_TYPES[k]) and not (k != "boolean" and isinstance(parsed, bool))
                   for k in allowed if k in JSON_TYPES):
                return parsed
    return value


def required_missing(config: dict, schema_path: Path = SCHEMA) -> list[str]:
    """The schema's required top-level keys that `config` lacks: a config file without them is an overlay."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    return [k for k in schema.get("required", []) if k not in (config or {})]


def validate(config: dict, schema_path: Path = SCHEMA) -> dict:
    """Return a validated copy of `config` with defaults; raise ConfigError naming the offending key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    config = coerce(copy.deepcopy(config), schema, schema)
    for run in (config.get("runs") or {}).values():  # a run's train keys are the train section's
        if isinstance(run, dict) and isinstance(run.get("train"), dict):
            run["train"] = coerce(run["train"], schema["properties"]["train"], schema)
    _check_run_name(config.get("run_name"))
    # An entry of sft_models is `model` with some keys replaced (whole sub-sections: `hub` or `tiny` as a unit).
    given = {}
    if isinstance(config.get("sft_models"), dict) and isinstance(config.get("model", {}), dict):
        given = {name: set(entry) for name, entry in config["sft_models"].items() if isinstance(entry, dict)}
        config["sft_models"] = {name: {**copy.deepcopy(config.get("model", {})), **entry} if isinstance(entry, dict)
                                else entry for name, entry in config["sft_models"].items()}
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ConfigError(f"config error at {where}: {e.message}")
    overridden = {name: set(run.get("train", {})) for name, run in config["runs"].items()}
    for name, run in config["runs"].items():
        run["train"] = {**config["train"], **run.get("train", {})}
        unknown = set(run["train"]) - set(config["train"])
        if unknown:
            raise ConfigError(f"config error at runs.{name}.train: unknown key {sorted(unknown)[0]!r}")
    _check_sft_models(config, given)
    _check_released(config)
    _check_batches(config, overridden)
    _check_eval_models(config)
    for name, run in config["runs"].items():
        if run["train"]["use_vllm"]:
            # TRL 1.16's vLLM rollouts (GRPOTrainer._generate_single_turn -> VLLMGeneration.generate) pass images
            # only: a video prompt would be sampled without its clip, while the loss sees the clip.
            raise ConfigError(f"config error at runs.{name}.train.use_vllm: the pinned TRL's vLLM rollouts take "
                              "images only, so the rollouts would not see the video; set train.use_vllm: false "
                              "(rollouts by transformers generate on the training GPUs)")
    if config["filter"]["low"] > config["filter"]["high"]:
        raise ConfigError("config error at filter: low must not exceed high")
    return config


def _check_sft_models(config: dict, given: dict[str, set]) -> None:
    models = sft_models(config)
    for name, section in config["sft_models"].items():
        if name in config["runs"]:
            raise ConfigError(f"config error at sft_models.{name}: {name!r} is also a run; a model and a run "
                              "need different names (both are models/<name>)")
        source = section["source"]
        if source != config["model"]["source"]:
            raise ConfigError(f"config error at sft_models.{name}.source: {source!r}, but model.source is "
                              f"{config['model']['source']!r}; a study takes its SFT models from one source")
        # its own checkpoint (hub) or architecture (tiny): taken from `model`, it would be a copy of `sft`
        own, other = ("hub", "tiny") if source == "hub" else ("tiny", "hub")
        if own not in given.get(name, ()):
            raise ConfigError(f"config error at sft_models.{name}: no `{own}` section; with model.source {source} "
                              f"each model gives its own (else it is a copy of `model`)")
        if other in given.get(name, ()):
            raise ConfigError(f"config error at sft_models.{name}.{other}: a model of source {source} takes no "
                              f"`{other}` section (is this a config of the other kind merged in? a profile's "
                              "configfile takes replace-workflow-config)")
    for name, run in config["runs"].items():
        if run["sft_model"] not in models:
            raise ConfigError(f"config error at runs.{name}.sft_model: unknown model {run['sft_model']!r} "
                              f"(known: {', '.join(models)})")


def _check_released(config: dict) -> None:
    """A released checkpoint is a model of its own (models/<name>): its name is no run's or SFT model's; its paper
    numbers come from `reference_label` or `reference` (frame counts as keys, kept as strings: "16")."""
    models = sft_models(config)
    for name, entry in config["released"].items():
        where = f"config error at released.{name}"
        for other, section in ((config["runs"], "runs"), (models, "model/sft_models")):
            if name in other:
                raise ConfigError(f"{where}: {name!r} is also in {section}; a released checkpoint needs a name of "
                                  "its own (each is models/<name>)")
        source = entry["mirror_from"]
        if source is not None and source not in models:
            raise ConfigError(f"{where}.mirror_from: unknown model {source!r} (known: {', '.join(models)})")
        if source is not None and entry["mirror"] is not None:
            raise ConfigError(f"{where}: mirror and mirror_from exclude each other (mirror_from saves the model "
                              "into results/<run_name>/mirror and fetches it from there)")
        if source is not None:
            same = [n for n, e in config["released"].items() if e["mirror_from"] and n != name
                    and e["hub"]["repo"] == entry["hub"]["repo"]]
            if same:
                raise ConfigError(f"{where}.hub.repo: {entry['hub']['repo']!r} is also the repo of released.{same[0]}; "
                                  "each mirrored release needs a repo of its own (results/<run_name>/mirror/<repo>)")
        reference = {}
        for bench, by_frames in entry["reference"].items():
            reference[bench] = {}
            for frames, value in by_frames.items():
                if not (isinstance(frames, int) or str(frames).isdigit()) or int(frames) < 1:
                    raise ConfigError(f"{where}.reference.{bench}: {frames!r} is not a frame count")
                reference[bench][str(int(frames))] = float(value)
        entry["reference"] = reference


def released_models(config: dict) -> dict[str, dict]:
    """{name: section} of the released checkpoints (config `released`), in config order."""
    return dict(config.get("released") or {})


def _check_run_name(name) -> None:
    if isinstance(name, str) and not RUN_NAME.match(name):
        raise ConfigError(f"config error at run_name: {name!r} is not a safe folder name: everything is written to "
                          "results/<run_name>/, so it takes letters, digits, '_', '.' and '-' and starts with a "
                          "letter or digit (no '/', no '..')")


def _check_batches(config: dict, overridden: dict[str, set]) -> None:
    """Each run's batch holds whole groups: TRL requires the global batch (per_device_batch_size x processes)
    divisible by num_generations, and T-GRPO/TW-GRPO a device's batch. The process count comes from the profile
    (one on a workstation), so the config must hold for any: per_device_batch_size a multiple of num_generations."""
    for name, run in config["runs"].items():
        train, own = run["train"], overridden[name]
        b, g = train["per_device_batch_size"], train["num_generations"]
        if b % g:
            where = [f"runs.{name}.train.{k}" if k in own else f"train.{k}"
                     for k in ("per_device_batch_size", "num_generations")]
            raise ConfigError(
                f"config error at {where[0]} and {where[1]} (run {name}): per_device_batch_size {b} is not a "
                f"multiple of num_generations {g}; TRL requires the global batch (per_device_batch_size x processes) "
                f"divisible by num_generations, for any process count, so each device holds whole groups "
                f"(e.g. per_device_batch_size {-(-b // g) * g})")


def known_models(config: dict) -> dict[str, str]:
    """{name: the config section it comes from} of every model an evaluation can name (see MODEL_NAMES)."""
    return {name: section for section, names in MODEL_NAMES.items() for name in names(config)}


def _check_eval_models(config: dict) -> None:
    known = known_models(config)
    for model in config["eval"]["models"]:
        if model not in known:
            raise ConfigError(f"config error at eval.models: unknown model {model!r}; a model is one of "
                              f"{', '.join(MODEL_NAMES)} (known: {', '.join(known)})")


def sft_models(config: dict) -> dict[str, dict]:
    """{name: model section} of every model a run can start from: `sft` (config `model`) and `sft_models`."""
    return {"sft": config["model"], **config.get("sft_models", {})}


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML, and Snakemake's configfile, keep the
    last silently: a pasted block would override a setting with no word)."""


def _mapping_once(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"{node.start_mark.name}: key {key!r} given twice (lines {seen[key] + 1} and "
                              f"{key_node.start_mark.line + 1}): keep one")
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_once)


def read_yaml(path: Path):
    """A YAML file, each key at most once per mapping (ConfigError naming the file, the key and its lines)."""
    with open(path) as f:
        return yaml.load(f, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def check_config_files(paths) -> None:
    """The Snakefile's config files (Snakemake reads them itself, last key winning): a key given twice stops the run."""
    for path in paths:
        read_yaml(path)


def load(path: Path) -> dict:
    return validate(read_yaml(path))


def schema_defaults(*path: str, schema_path: Path = SCHEMA) -> dict:
    """{key: default} of the schema object at `path`: ("train",) is the train section, ("runs", "*") one run.

    The schema is the one list of every knob and its default; code that needs a default reads it here.
    """
    node = yaml.safe_load(Path(schema_path).read_text())
    for key in path:
        node = node["additionalProperties"] if key == "*" else node["properties"][key]
    return {k: copy.deepcopy(v["default"]) for k, v in node.get("properties", {}).items() if "default" in v}


def ktr_knob_defaults() -> dict:
    """{knob: default} of Video-KTR: the run properties of the schema that belong to no other method."""
    return {k: v for k, v in schema_defaults("runs", "*").items()
            if k != "sft_model" and not k.startswith(("tgrpo_", "twgrpo_"))}
