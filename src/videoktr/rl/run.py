"""One RL run: the filtered questions, Video-R1 rewards, a TRL config from our config, resumable training."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoConfig, AutoProcessor, Qwen2_5_VLForConditionalGeneration
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig

from videoktr.data.model_inputs import conversation
from videoktr.models.tiny import vision_token_ids
from videoktr.provenance import digest, model_fingerprint
from videoktr.rl.baselines import TGRPOTrainer, TWGRPOTrainer
from videoktr.rl.cost_meter import CostMeter
from videoktr.rl.engine import engine_record, local_parameter_share
from videoktr.rl.finished import KEPT, keep_model, restore
from videoktr.rl.gradients import GradientLogCallback
from videoktr.rl.grpo import VideoGRPOTrainer
from videoktr.rl.ktr import KNOBS, KTRSettings, KTRTrainer
from videoktr.rl.rewards import AccuracyReward, format_reward_func
from videoktr.rl.tally import RunTally

log = logging.getLogger(__name__)


def to_dataset(records: list[dict]) -> Dataset:
    return Dataset.from_list([
        {"prompt": conversation(r), "path": r["path"], "solution": r["solution"],
         "problem_type": r["problem_type"], "problem_id": str(r["problem_id"]),
         "data_source": str(r.get("data_source", ""))}
        for r in records
    ])


# train.kl_estimator -> TRL's use_bias_correction_kl
KL_ESTIMATORS = {"k3": False, "bias_corrected": True}


def cpu_deepspeed_state() -> None:
    """accelerate's process state for DeepSpeed on its CPU accelerator, made before the config: given no CUDA,
    transformers' DeepSpeed path passes accelerate no backend, and accelerate then sees one process per rank (and
    DeepSpeed a batch size of one rank). gloo it is; deepspeed.comm starts on it."""
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    try:
        PartialState(backend="gloo")
    finally:
        del os.environ["ACCELERATE_USE_DEEPSPEED"]


def grpo_config(train: dict, work_dir: Path, seed: int, suppress: list[int], run_name: str = "") -> GRPOConfig:
    """TRL's GRPOConfig from the config's `train` section. `train.deepspeed` (a DeepSpeed JSON such as
    config/deepspeed/zero3.json) needs CUDA and deepspeed: without them this stops at once with one line naming the
    key. `train.use_vllm` is refused: TRL's vLLM rollouts do not carry video."""
    cuda = torch.cuda.is_available()
    deepspeed = train.get("deepspeed")
    cpu_engine = False
    if deepspeed:
        import importlib.util

        if not Path(deepspeed).is_file():
            raise SystemExit(f"train.deepspeed: {deepspeed} is not a file (e.g. config/deepspeed/zero3.json)")
        # off CUDA, DeepSpeed runs on its CPU accelerator (gloo) when asked for by DS_ACCELERATOR=cpu: the rehearsal
        cpu_engine = os.environ.get("DS_ACCELERATOR") == "cpu"
        if not (cuda or cpu_engine) or importlib.util.find_spec("deepspeed") is None:
            why = "no CUDA GPU is visible here" if not (cuda or cpu_engine) else "the deepspeed package is not installed"
            raise SystemExit(f"train.deepspeed ({deepspeed}) needs CUDA GPUs (or DS_ACCELERATOR=cpu) and deepspeed, "
                             f"but {why}; run on the GPU nodes (envs/train.yaml) or set train.deepspeed: null")
    if train.get("use_vllm"):  # also refused by the config check (videoktr.config)
        raise SystemExit("train.use_vllm: the pinned TRL's vLLM rollouts take images only, so the rollouts would not "
                         "see the video; set train.use_vllm: false")
    if cpu_engine:
        cpu_deepspeed_state()
    return GRPOConfig(
        accelerator_config={"use_configured_state": True} if cpu_engine else None,
        output_dir=str(Path(work_dir) / "checkpoints"),
        learning_rate=train["lr"],
        beta=train["beta"],
        num_generations=train["num_generations"],
        per_device_train_batch_size=train["per_device_batch_size"],
        max_completion_length=train["max_completion_length"],
        temperature=train["temperature"],
        num_train_epochs=train["epochs"],
        max_steps=train["max_steps"],
        loss_type=train["loss_type"],
        save_strategy="steps",
        save_steps=train["save_steps"],
        # bounded: a paper checkpoint is ~130 GB (README); without optimizer state (save_only_model) no resume
        save_total_limit=train.get("save_total_limit"),  # the schema's default: 2
        save_only_model=train.get("save_only_model", False),
        logging_steps=train["logging_steps"],
        generation_kwargs={"suppress_tokens": suppress},
        report_to=[],
        run_name=run_name,
        # DeepSpeed on its CPU accelerator: accelerate's DeepSpeed path (deepspeed.comm over gloo), not its CPU one
        use_cpu=not cuda and not cpu_engine,
        # TRL turns bf16 on by default; on a CPU without native bf16 every matmul is emulated (backward ~15x slower)
        bf16=cuda and torch.cuda.is_bf16_supported(),
        # multi-process on CPU (torchrun) talks over gloo
        ddp_backend="gloo" if not cuda and not cpu_engine and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        deepspeed=deepspeed or None,
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        # optimiser schedule (Hugging Face names; the schema's defaults are TRL's: linear, no warmup, no decay, 1.0)
        lr_scheduler_type=train.get("lr_scheduler_type", "linear"),
        warmup_steps=float(train["warmup_ratio"]) if train.get("warmup_ratio") else 0,  # a float < 1: a ratio
        weight_decay=train.get("weight_decay", 0.0),
        max_grad_norm=train.get("max_grad_norm", 1.0),
        # k3: plain exp(d) - d - 1 (DeepSeekMath, Video-R1, the authors' code); bias_corrected: TRL's k3 x pi/pi_old
        use_bias_correction_kl=KL_ESTIMATORS[train.get("kl_estimator", "k3")],
    )


def trained_with(trainer) -> dict:
    """The settings a run actually trained with, read from the built trainer (its GRPOConfig, and KTRSettings or
    the baseline's knobs), not from the config dict: metrics.json's `trained_with`."""
    a = trainer.args
    kl = {v: k for k, v in KL_ESTIMATORS.items()}[bool(a.use_bias_correction_kl)]
    out = {
        "trainer": type(trainer).__name__,
        "learning_rate": a.learning_rate, "beta": a.beta, "num_generations": a.num_generations,
        "temperature": a.temperature, "max_completion_length": a.max_completion_length, "loss_type": a.loss_type,
        "per_device_train_batch_size": a.per_device_train_batch_size, "world_size": a.world_size,
        "lr_scheduler_type": str(getattr(a.lr_scheduler_type, "value", a.lr_scheduler_type)),
        "warmup_steps": a.warmup_steps, "weight_decay": a.weight_decay, "max_grad_norm": a.max_grad_norm,
        "kl_estimator": kl, "epochs": a.num_train_epochs, "max_steps": a.max_steps, "seed": a.seed,
        "bf16": a.bf16,
    }
    vp = trainer.processing_class.video_processor
    size = vp.size if isinstance(vp.size, dict) else vars(vp.size)
    out["video_pixels"] = [size.get("shortest_edge"), size.get("longest_edge")]
    if isinstance(trainer, KTRTrainer):
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(trainer.ktr).items()
                    if k in KNOBS},
                   diagnostics_every=trainer.diagnostics_every)
    elif isinstance(trainer, TGRPOTrainer):
        out.update(tgrpo_mu=trainer.mu, tgrpo_alpha=trainer.alpha, temporal_unit=trainer.temporal_unit)
    elif isinstance(trainer, TWGRPOTrainer):
        out.update(twgrpo_alpha=trainer.tw_alpha, twgrpo_scope=trainer.tw_scope)
    return out


COMPLETE = "complete.json"  # written in the work dir once a run's model is saved: the run, its output and metrics
WORK_FILES = ("checkpoints", "token_log", "gradients.csv", COMPLETE, KEPT)  # what a fresh start clears


def _step(ckpt: Path) -> int:
    return int(ckpt.name.split("-")[-1])


def checkpoints(work_dir: Path) -> list[Path]:
    """Checkpoint folders, newest first."""
    ckpt_dir = Path(work_dir) / "checkpoints"
    found = ckpt_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if ckpt_dir.is_dir() else []
    return sorted((p for p in found if p.is_dir() and p.name.split("-")[-1].isdigit()), key=_step, reverse=True)


def _readable(path: Path) -> str | None:
    """None if the file is whole, else why not. A torch .pt/.pth is a zip (central directory at its end) and a
    .safetensors file carries its length in its header: a file cut off mid-write fails either check."""
    if not path.is_file():
        return f"{path.name} missing"
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                f.keys()
        elif path.suffix in (".pt", ".pth", ".bin"):
            import zipfile

            with zipfile.ZipFile(path) as z:
                z.namelist()
    except Exception as err:  # noqa: BLE001 - any failure to read it means the save was cut off
        return f"{path.name} unreadable ({type(err).__name__}: {err})"
    return None


def checkpoint_problem(ckpt: Path, world_size: int = 1) -> str | None:
    """Why `ckpt` cannot be resumed from (a kill while it was written), or None when it is complete.

    transformers' `_save_checkpoint` writes the weights, then optimizer and scheduler, then each process's RNG state,
    and trainer_state.json last; all of them must be there and readable (a DeepSpeed checkpoint: the `latest` tag's
    folder with model and optimizer states in place of the weights and optimizer files)."""
    ckpt = Path(ckpt)
    try:
        state = json.loads((ckpt / "trainer_state.json").read_text())
        if state.get("global_step") != _step(ckpt):
            return f"trainer_state.json says step {state.get('global_step')}"
    except FileNotFoundError:
        return "trainer_state.json missing (written last: the save was cut off)"
    except (OSError, ValueError, AttributeError) as err:
        return f"trainer_state.json unreadable ({err})"
    files: list[Path] = []
    if (ckpt / "latest").is_file():  # DeepSpeed
        tag = ckpt / (ckpt / "latest").read_text().strip()
        if not any(tag.glob("*model_states.pt")) or not any(tag.glob("*optim_states.pt")):
            return f"DeepSpeed folder {tag.name} lacks model or optimizer states"
        files += sorted(tag.glob("*_states.pt"))
    else:
        index = ckpt / "model.safetensors.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError) as err:
                return f"{index.name} unreadable ({err})"
            files += [ckpt / shard for shard in shards]
        elif (ckpt / "pytorch_model.bin").is_file():
            files.append(ckpt / "pytorch_model.bin")
        else:
            files.append(ckpt / "model.safetensors")
        files += [ckpt / "optimizer.pt", ckpt / "scheduler.pt"]
    files += [ckpt / "rng_state.pth"] if world_size <= 1 else [ckpt / f"rng_state_{i}.pth" for i in range(world_size)]
    return next((why for why in map(_readable, files) if why), None)


def last_checkpoint(work_dir: Path, world_size: int = 1) -> str | None:
    """The newest complete checkpoint (`checkpoint_problem`), or None."""
    return next((str(c) for c in checkpoints(work_dir) if checkpoint_problem(c, world_size) is None), None)


def _clear(work_dir: Path) -> None:
    for item in WORK_FILES:
        path = work_dir / item
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _finished_record(work_dir: Path, fingerprint: dict) -> dict | None:
    """complete.json of this very run (its run_config.json stamp is `fingerprint`), or None."""
    stamp, done = work_dir / "run_config.json", work_dir / COMPLETE
    try:
        record = json.loads(done.read_text())
        same = stamp.read_text() == json.dumps(fingerprint, sort_keys=True, default=str)
    except (OSError, ValueError):
        return None
    return record if same and {"out_fingerprint", "metrics"} <= set(record) else None


def finished_run(work_dir: Path, fingerprint: dict, out_dir: Path) -> dict | None:
    """The metrics of this very run when it finished before and its model is still in `out_dir` as it was saved;
    else None. Read-only (every process may ask)."""
    record = _finished_record(Path(work_dir), fingerprint)
    if record is None or not Path(out_dir).is_dir():
        return None
    try:
        same = record["out_fingerprint"] == model_fingerprint(out_dir)
    except OSError:
        return None
    return record["metrics"] if same else None


def prepare_work_dir(work_dir: Path, fingerprint: dict, world_size: int = 1) -> None:
    """Keep only what belongs to this very run and can be resumed (main process, before training).

    - A work dir left by another config is cleared.
    - A finished run (complete.json) that is trained again was not reusable (`finished_run`: its model is gone, as
      when Snakemake deletes a forced job's outputs, or was rewritten): it starts afresh, not from its last checkpoint.
    - Checkpoints cut off mid-write (`checkpoint_problem`) are logged and removed, so resuming takes the newest complete
      one and a new save of that step starts from an empty folder.
    - Side files written per step (gradient rows) past the checkpoint resumed from are dropped: the resumed steps
      write them again.
    """
    stamp = work_dir / "run_config.json"
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    if stamp.exists() and stamp.read_text() != text:
        log.info("config of %s changed: starting afresh", work_dir)
        _clear(work_dir)
    elif (work_dir / COMPLETE).exists():
        log.info("%s holds a finished run whose model is gone or rewritten (a forced rerun): training afresh, "
                 "not resuming its checkpoints", work_dir)
        _clear(work_dir)
    stamp.write_text(text)
    for ckpt in checkpoints(work_dir):
        why = checkpoint_problem(ckpt, world_size)
        if why:
            log.warning("skipping %s, incomplete: %s; removing it", ckpt, why)
            shutil.rmtree(ckpt)
    last = last_checkpoint(work_dir, world_size)
    grads = work_dir / "gradients.csv"
    if grads.exists():
        import pandas as pd

        step = _step(Path(last)) if last else 0
        rows = pd.read_csv(grads)
        rows[rows["step"] < step].to_csv(grads, index=False) if step else grads.unlink()


def _load_weights_from_checkpoint(trainer) -> None:
    """transformers' Trainer resumes a plain (not DeepSpeed/FSDP) model with `load_state_dict(strict=False)` on the
    checkpoint's raw file, whose keys save_pretrained wrote in the hub layout (`visual.*`, `model.layers.*`) while
    Qwen2.5-VL's modules are `model.visual.*`, `model.language_model.*`: no weight matches, it only warns, and the
    resumed steps train the starting model again. Load the checkpoint as from_pretrained does (with its key mapping)
    and copy every weight, strictly."""
    original = trainer._load_from_checkpoint

    def load(resume_from_checkpoint, model=None):
        if model is not None:  # FSDP / SageMaker: their own loaders
            return original(resume_from_checkpoint, model)
        target = trainer.model
        saved = type(target).from_pretrained(resume_from_checkpoint, dtype=next(target.parameters()).dtype)
        target.load_state_dict(saved.state_dict(), strict=True)
        log.info("weights restored from %s", resume_from_checkpoint)

    trainer._load_from_checkpoint = load


def restored_run(work_dir: Path, fingerprint: dict, out_dir: Path, metrics: Path) -> dict | None:
    """A retried or requeued job of this very run that had finished (its outputs deleted by Snakemake before the
    job): its model and metrics.json linked back from the work dir (videoktr.rl.finished), or None."""
    record = _finished_record(work_dir, fingerprint)
    if record is None:
        return None
    if int(os.environ.get("RANK", "0")) == 0 and not restore(work_dir, record["out_fingerprint"], out_dir, metrics):
        return None
    return record["metrics"]


def train_run(name: str, run: dict, model_dir: Path, records: list[dict], data_dir: Path, work_dir: Path,
              out_dir: Path, *, video_cfg: dict, seed: int, callbacks=(), retry_metrics: Path | None = None) -> dict:
    """`retry_metrics`: this job is a retry or a requeue (videoktr.rl.finished.is_retry) whose metrics.json goes
    there; a run that had finished is then restored, not trained again."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    # the starting model's identity, not its path: a retrained SFT model in the same folder starts afresh
    fingerprint = {"run": run, "model": model_fingerprint(model_dir), "records": digest(records), "seed": seed,
                   "video": video_cfg}
    done = finished_run(work_dir, fingerprint, out_dir)
    if done is not None:  # trained before, its model still in place: not trained again
        log.info("%s finished before (%s steps) and its model is in %s: reusing it, not training again", name,
                 done.get("global_step"), out_dir)
        return done
    if retry_metrics is not None:
        done = restored_run(work_dir, fingerprint, Path(out_dir), Path(retry_metrics))
        if done is not None:
            log.info("%s finished before (%s steps) and this job is a retry or a requeue: its model and metrics "
                     "restored from %s, not trained again", name, done.get("global_step"), work_dir / KEPT)
            return done
    processor = AutoProcessor.from_pretrained(model_dir)
    # the config before the model: with train.deepspeed (ZeRO-3) it makes from_pretrained load partitioned (zero.Init)
    args = grpo_config(run["train"], work_dir, seed, vision_token_ids(AutoConfig.from_pretrained(model_dir)),
                       run_name=name)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    share = local_parameter_share(model)
    if is_deepspeed_zero3_enabled() and args.world_size > 1 and share > 1.5 / args.world_size:
        raise RuntimeError(f"train.deepspeed ZeRO-3: this rank holds {share:.0%} of the parameters with "
                           f"{args.world_size} ranks: the model was not loaded partitioned")
    accuracy = AccuracyReward()
    common = dict(model=model, reward_funcs=[accuracy, format_reward_func], args=args,
                  train_dataset=to_dataset(records), processing_class=processor, data_dir=data_dir,
                  video_cfg=video_cfg)
    if run["method"] == "ktr":
        trainer = KTRTrainer(**common, ktr=KTRSettings.from_run(run), token_log_dir=work_dir / "token_log",
                             diagnostics_every=run["train"]["diagnostics_every"])
        trainer.add_callback(GradientLogCallback(trainer, work_dir / "gradients.csv"))
    elif run["method"] == "tgrpo":
        trainer = TGRPOTrainer(**common, mu=run["tgrpo_mu"], alpha=run["tgrpo_alpha"],
                               temporal_unit=run["temporal_unit"])
    elif run["method"] == "twgrpo":
        trainer = TWGRPOTrainer(**common, alpha=run["twgrpo_alpha"])
    else:
        trainer = VideoGRPOTrainer(**common)
    for callback in callbacks:
        trainer.add_callback(callback)
    cost = CostMeter(trainer)  # Table 4: time, memory, throughput, forward latency and FLOPs of this very run
    trainer.add_callback(cost)
    tally = RunTally(trainer, accuracy)  # answers, clips and rollouts over every segment, as the cost
    trainer.add_callback(tally)
    # Checkpoints live outside the rule's outputs: a rerun after a kill resumes from the newest complete one.
    world_size = trainer.args.world_size
    if trainer.accelerator.is_main_process:
        prepare_work_dir(work_dir, fingerprint, world_size)
    trainer.accelerator.wait_for_everyone()
    last = last_checkpoint(work_dir, world_size)
    if last:
        _load_weights_from_checkpoint(trainer)
    if last and _took_every_step(last) and not (trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled):
        # stopped after its last checkpoint, before its model was saved: resuming, transformers would take one step
        # past max_steps (it checks for the end after a step); the model is the checkpoint's
        log.info("%s had taken all its steps at %s (stopped before its model was saved): taking the model from it, "
                 "no step more", name, last)
        trainer._load_from_checkpoint(last)
        trainer.state = TrainerState.load_from_json(str(Path(last) / "trainer_state.json"))
        cost.adopt(trainer.state)
        tally.adopt(trainer.state)
        training_loss = None
    else:
        if last:
            log.info("resuming %s from %s", name, last)
        training_loss = trainer.train(resume_from_checkpoint=last).training_loss
    trainer.save_model(str(out_dir))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(out_dir)
    metrics = {
        "run": name, "method": run["method"], "global_step": trainer.state.global_step,
        "train_loss": training_loss, "resumed_from": [], "segments": 1,
        "cost": cost.summary(), "trained_with": trained_with(trainer), "log_history": trainer.state.log_history,
        # over every segment (videoktr.rl.tally): unparseable_answers, scored_answers, video_input (what the policy
        # saw of the clips: frames, pixels per frame, video tokens per clip) and rollouts (a digest of each of this
        # process's generation batches, in order: where two runs' samples part, first batch 1); counted_from_step
        # 0 unless resumed from a checkpoint saved without them
        **tally.summary(),
        # world size, ZeRO stage, accelerator; per rank its padded completion widths and local parameter share
        "engine": engine_record(trainer, share),
    }
    whole_run(metrics, training_loss, last)
    if trainer.accelerator.is_main_process:  # the marker a rerun reads: reuse, or (model gone) start afresh
        keep_model(work_dir, out_dir)  # before the marker: a marked run always has its kept model
        (work_dir / COMPLETE).write_text(json.dumps(
            {"out": str(out_dir), "out_fingerprint": model_fingerprint(out_dir), "metrics": metrics}, default=str))
    return metrics


def _took_every_step(ckpt: str) -> bool:
    state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
    return 0 < state.get("max_steps", 0) <= state["global_step"]


def whole_run(metrics: dict, segment_loss: float | None, last: str | None) -> None:
    """A resumed run's metrics cover the whole run: the checkpoints it was resumed from (`resumed_from`, oldest first),
    its number of segments, and train_loss over every step (transformers' covers the last segment's steps only).
    `segment_loss` None: no segment of this invocation (the model taken from the finished checkpoint `last`)."""
    segments = metrics["cost"]["per_segment"]
    metrics["resumed_from"] = [s["resumed_from"] for s in segments if s["resumed_from"]]
    metrics["segments"] = len(segments)
    if segment_loss is None:
        metrics["resumed_from"].append(Path(last).name)
    if segments and (len(segments) > 1 or segment_loss is None):
        steps = sum(s["optimizer_steps"] for s in segments)
        loss = sum(s["loss_sum"] for s in segments[:-1])
        loss += segments[-1]["loss_sum"] if segment_loss is None else segment_loss * segments[-1]["optimizer_steps"]
        metrics["train_loss"] = loss / max(steps, 1)
