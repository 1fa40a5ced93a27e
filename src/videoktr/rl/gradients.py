"""Gradient diagnostics of Video-KTR (paper appendix B.1): selected-token vs residual-token vs all-token loss."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import TrainerCallback

from videoktr.rl.grpo import VideoGRPOTrainer


def diagnostics(trainer, model, inputs: dict) -> dict:
    """Final-layer gradients of the selected-token and residual-token losses vs the all-token loss, one row."""
    params = [p for p in trainer.accelerator.unwrap_model(model).model.language_model.layers[-1].parameters()
              if p.requires_grad]
    valid = inputs["completion_mask"]
    grads, losses = {}, {}
    for name, m in {"full": valid, "selected": inputs["key_mask"], "residual": valid * (1 - inputs["key_mask"])}.items():
        loss = VideoGRPOTrainer._compute_loss(trainer, model, {**inputs, "tool_mask": m})
        losses[name] = loss.item()
        grads[name] = torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, allow_unused=False)])
    cos = torch.nn.functional.cosine_similarity
    per_seq = (inputs["advantages"] if inputs["advantages"].dim() == 1 else inputs["advantages"].mean(-1))
    return {
        "step": trainer.state.global_step,
        **{f"loss_{k}": v for k, v in losses.items()},
        **{f"grad_norm_{k}": g.norm().item() for k, g in grads.items()},
        "cos_selected_full": cos(grads["selected"], grads["full"], dim=0).item(),
        "cos_residual_full": cos(grads["residual"], grads["full"], dim=0).item(),
        "grad_elements": grads["full"].numel(),  # the final layer's parameter count: whole, also under ZeRO-3
        "advantage_variance": per_seq.float().var().item() if per_seq.numel() > 1 else 0.0,
    }


class GradientLogCallback(TrainerCallback):
    """Appends the KTR trainer's gradient diagnostics (selected vs residual tokens) to a CSV at each log."""

    def __init__(self, trainer, path: Path):
        self.trainer, self.path = trainer, Path(path)

    def on_log(self, args, state, control, **kwargs):
        import pandas as pd

        rows, self.trainer.gradient_rows = self.trainer.gradient_rows, []
        if rows and state.is_world_process_zero:  # one writer (the first rank's batch): ranks would interleave rows
            pd.DataFrame(rows).to_csv(self.path, mode="a", header=not self.path.exists(), index=False)
