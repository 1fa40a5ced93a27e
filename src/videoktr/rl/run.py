"""One RL run: the filtered questions, Video-R1 rewards, a TRL config from our config, resumable training."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from transformers.trainer_utils import get_last_checkpoint
from trl import GRPOConfig

from videoktr.data.model_inputs import conversation
from videoktr.models.tiny import vision_token_ids
from videoktr.provenance import digest, model_fingerprint
from videoktr.rl.baselines import TGRPOTrainer, TWGRPOTrainer
from videoktr.rl.cost_meter import CostMeter
from videoktr.rl.gradients import GradientLogCallback
from videoktr.rl.grpo import VideoGRPOTrainer
from videoktr.rl.ktr import KTRSettings, KTRTrainer
from videoktr.rl.rewards import AccuracyReward, format_reward_func

log = logging.getLogger(__name__)


def to_dataset(records: list[dict]) -> Dataset:
    return Dataset.from_list([
        {"prompt": conversation(r), "path": r["path"], "solution": r["solution"],
         "problem_type": r["problem_type"], "problem_id": str(r["problem_id"])}
        for r in records
    ])


def grpo_config(train: dict, work_dir: Path, seed: int, suppress: list[int], run_name: str = "") -> GRPOConfig:
    """TRL's GRPOConfig from the config's `train` section. `train.deepspeed` (a DeepSpeed JSON such as
    config/deepspeed/zero3.json) needs CUDA and deepspeed: without them this stops at once with one line naming the
    key. `train.use_vllm` is refused: TRL's vLLM rollouts do not carry video."""
    cuda = torch.cuda.is_available()
    deepspeed = train.get("deepspeed")
    if deepspeed:
        import importlib.util

        if not Path(deepspeed).is_file():
            raise SystemExit(f"train.deepspeed: {deepspeed} is not a file (e.g. config/deepspeed/zero3.json)")
        if not cuda or importlib.util.find_spec("deepspeed") is None:
            why = "no CUDA GPU is visible here" if not cuda else "the deepspeed package is not installed"
            raise SystemExit(f"train.deepspeed ({deepspeed}) needs CUDA GPUs and deepspeed, but {why}; run on the "
                             f"GPU nodes (envs/train.yaml) or set train.deepspeed: null")
    if train.get("use_vllm"):  # also refused by the config check (videoktr.config)
        raise SystemExit("train.use_vllm: the pinned TRL's vLLM rollouts take images only, so the rollouts would not "
                         "see the video; set train.use_vllm: false")
    return GRPOConfig(
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
        logging_steps=train["logging_steps"],
        generation_kwargs={"suppress_tokens": suppress},
        report_to=[],
        run_name=run_name,
        use_cpu=not cuda,
        # TRL turns bf16 on by default; on a CPU without native bf16 every matmul is emulated (backward ~15x slower)
        bf16=cuda and torch.cuda.is_bf16_supported(),
        # multi-process on CPU (torchrun) talks over gloo
        ddp_backend="gloo" if not cuda and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        deepspeed=deepspeed or None,
        seed=seed,
        data_seed=seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def last_checkpoint(work_dir: Path) -> str | None:
    ckpt_dir = work_dir / "checkpoints"
    return get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.exists() else None


def prepare_work_dir(work_dir: Path, fingerprint: dict) -> None:
    """Keep only what belongs to this very run: a work dir left by another config is cleared.

    Side files written per step (gradient rows) past the newest checkpoint are dropped: the resumed steps write them
    again.
    """
    stamp = work_dir / "run_config.json"
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    if stamp.exists() and stamp.read_text() != text:
        log.info("config of %s changed: starting afresh", work_dir)
        for item in ("checkpoints", "token_log", "gradients.csv"):
            path = work_dir / item
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    stamp.write_text(text)
    last = last_checkpoint(work_dir)
    grads = work_dir / "gradients.csv"
    if grads.exists():
        import pandas as pd

        step = int(Path(last).name.split("-")[-1]) if last else 0
        rows = pd.read_csv(grads)
        rows[rows["step"] < step].to_csv(grads, index=False) if step else grads.unlink()


def train_run(name: str, run: dict, model_dir: Path, records: list[dict], data_dir: Path, work_dir: Path,
              out_dir: Path, *, video_cfg: dict, seed: int, callbacks=()) -> dict:
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    args = grpo_config(run["train"], work_dir, seed, vision_token_ids(model), run_name=name)
    accuracy = AccuracyReward()
    common = dict(model=model, reward_funcs=[accuracy, format_reward_func], args=args,
                  train_dataset=to_dataset(records), processing_class=processor, data_dir=data_dir,
                  video_cfg=video_cfg)
    if run["method"] == "ktr":
        trainer = KTRTrainer(**common, ktr=KTRSettings.from_run(run), token_log_dir=work_dir / "token_log",
                             diagnostics_every=run["train"]["diagnostics_every"])
        trainer.add_callback(GradientLogCallback(trainer, work_dir / "gradients.csv"))
    elif run["method"] == "tgrpo":
        trainer = TGRPOTrainer(**common, mu=run["tgrpo_mu"], alpha=run["tgrpo_alpha"])
    elif run["method"] == "twgrpo":
        trainer = TWGRPOTrainer(**common, alpha=run["twgrpo_alpha"])
    else:
        trainer = VideoGRPOTrainer(**common)
    for callback in callbacks:
        trainer.add_callback(callback)
    cost = CostMeter(trainer)  # Table 4: time, memory, throughput, forward latency and FLOPs of this very run
    trainer.add_callback(cost)
    # Checkpoints live outside the rule's outputs: a rerun after a kill resumes from the newest one.
    if trainer.accelerator.is_main_process:
        # the starting model's identity, not its path: a retrained SFT model in the same folder starts afresh
        prepare_work_dir(work_dir, {"run": run, "model": model_fingerprint(model_dir), "records": digest(records),
                                    "seed": seed, "video": video_cfg})
    trainer.accelerator.wait_for_everyone()
    last = last_checkpoint(work_dir)
    if last:
        log.info("resuming %s from %s", name, last)
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(out_dir))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(out_dir)
    metrics = {
        "run": name, "method": run["method"], "global_step": trainer.state.global_step,
        "train_loss": result.training_loss, "resumed_from": last,
        "unparseable_answers": accuracy.unparseable, "scored_answers": accuracy.seen, "cost": cost.summary(),
        "log_history": trainer.state.log_history,
    }
    return metrics
