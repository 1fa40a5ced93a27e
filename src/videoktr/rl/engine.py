"""Which engine a run trained on, as each rank saw it: world size, DeepSpeed ZeRO stage, accelerator, the padded
completion width of each generation batch of this process (after a resume: the last segment's; TRL pads to the rank's own longest completion, so ranks differ), and the
rank's local share of the parameters (ZeRO-3 loads them partitioned through zero.Init: about 1/world_size)."""

from __future__ import annotations

import torch


def local_parameter_share(model: torch.nn.Module) -> float:
    """Elements this rank holds / elements of the model: 1.0 unpartitioned, ~1/world_size under ZeRO-3."""
    full = local = 0
    for p in model.parameters():
        n = getattr(p, "ds_numel", p.numel())
        full += n
        local += p.ds_tensor.numel() if hasattr(p, "ds_tensor") else n
    return local / max(full, 1)


def zero_stage(trainer) -> int | None:
    return trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else None


def accelerator_name(trainer) -> str:
    """DeepSpeed's accelerator (cpu, cuda) when it runs the engine, else the Trainer's device type."""
    if trainer.is_deepspeed_enabled:
        from deepspeed.accelerator import get_accelerator

        return get_accelerator().device_name()
    return trainer.accelerator.device.type


def engine_record(trainer, share: float) -> dict:
    """The run's engine, one entry per rank gathered from every rank (a collective: every rank calls it)."""
    from accelerate.utils import gather_object

    mine = {"rank": trainer.accelerator.process_index, "local_parameter_share": round(share, 4),
            "padded_completion_lengths": list(getattr(trainer, "completion_widths", []))}
    ranks = gather_object([mine]) if trainer.accelerator.num_processes > 1 else [mine]
    return {"world_size": trainer.accelerator.num_processes, "deepspeed_zero_stage": zero_stage(trainer),
            "accelerator": accelerator_name(trainer), "ranks": sorted(ranks, key=lambda r: r["rank"])}
