"""The counterfactual forward passes behind KTR's scores: per-token log-probabilities of the sampled completion under
the full, masked and shuffled video (`completion_scores`), the prompt groups that share one video, a donor clip
resized to another clip's grid, the generation tap that keeps what sampling already computed, and the threshold over
a whole batch gathered across processes."""

from __future__ import annotations

import numpy as np
import torch

from videoktr.rl.attribution import (
    distribution_distance,
    logprob_shift,
    threshold_mask,
)
from videoktr.rl.logits import chunked_log_softmax, entropy, gathered_head, head_log_softmax, tempered_log_softmax


def gathered_valid_scores(accelerator, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Every rank's valid scores, as one flat tensor."""
    local = scores[valid.bool()].float()
    padded = accelerator.pad_across_processes(local, dim=0, pad_index=float("nan"))
    everything = accelerator.gather(padded)
    return everything[~everything.isnan()]


def global_batch_mask(accelerator, scores: torch.Tensor, valid: torch.Tensor, ratio: float,
                      no_spread: str = "top_r") -> torch.Tensor:
    """Top r of the valid tokens of the whole global batch: one threshold over every rank's scores."""
    return threshold_mask(scores, valid, ratio, gathered_valid_scores(accelerator, scores, valid), no_spread)


def completion_scores(model, full: torch.Tensor, perturbed: list[torch.Tensor], targets: torch.Tensor,
                      cfg, temperature: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Entropy of the full pass and one shift score per perturbed pass for each completion token.

    `full` and each of `perturbed` are the hidden states that predict the completion tokens `targets` ([B, n, D]
    and [B, n]). The vocabulary projection runs `cfg.chunk` positions at a time: full [B, n, V] logits are never held.
    """
    entropies, shifts = [], [[] for _ in perturbed]
    with gathered_head(model.lm_head) as head:  # one weight gather for every chunk (ZeRO-3: ragged lengths)
        for sl, logp in chunked_log_softmax(head, full, temperature, cfg.chunk):
            entropies.append(entropy(logp))
            tgt = targets[:, sl, None]
            for out, h in zip(shifts, perturbed):
                logq = head_log_softmax(head, h[:, sl], temperature)
                if cfg.distance == "logprob":
                    out.append(logprob_shift(logp.gather(-1, tgt)[..., 0], logq.gather(-1, tgt)[..., 0], cfg.signed))
                else:
                    out.append(distribution_distance(logp, logq, cfg.distance))
    return torch.cat(entropies, 1), [torch.cat(x, 1) for x in shifts]


def prompt_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, videos: list[dict]) -> tuple[list, torch.Tensor]:
    """Rows with the same prompt and clip (the rollouts of one question): one representative row per group, and
    each row's group index."""
    reps, inverse = [], []
    for i in range(prompt_ids.size(0)):
        for g, r in enumerate(reps):
            if torch.equal(prompt_ids[i], prompt_ids[r]) and torch.equal(prompt_mask[i], prompt_mask[r]) and \
                    torch.equal(videos[i]["pixel_values_videos"], videos[r]["pixel_values_videos"]):
                inverse.append(g)
                break
        else:
            inverse.append(len(reps))
            reps.append(i)
    return reps, torch.tensor(inverse, dtype=torch.long, device=prompt_ids.device)


def clip_to_grid(frames: np.ndarray, n_frames: int, height: int, width: int) -> torch.Tensor:
    """A clip as [n_frames, 3, height, width] uint8: frames picked uniformly over the clip (all of them, in order,
    when it has n_frames), each resized (bicubic, antialiased) to height x width."""
    idx = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
    clip = torch.from_numpy(np.ascontiguousarray(np.asarray(frames)[idx])).permute(0, 3, 1, 2).float()
    if clip.shape[-2:] != (height, width):
        clip = torch.nn.functional.interpolate(clip, size=(height, width), mode="bicubic", antialias=True)
    return clip.round().clamp(0, 255).to(torch.uint8)


class GenerationTap:
    """What one `generate` call computes anyway, kept for the attribution: the clips' vision features (the first
    vision-encoder output) and, per sampled token, the policy's log-probability and entropy at `temperature` (from
    the logits of each decoding step; one step's distribution is held at a time)."""

    def __init__(self, model, temperature: float):
        self.temperature = temperature
        self.features: torch.Tensor | None = None
        self.logps: list[torch.Tensor] = []
        self.entropies: list[torch.Tensor] = []
        self._pending: torch.Tensor | None = None  # the last step's log-probs, until its token is known
        self._hooks = [model.model.visual.register_forward_hook(self._vision),
                       model.register_forward_pre_hook(self._step_input, with_kwargs=True),
                       model.register_forward_hook(self._step_output)]

    def _vision(self, module, args, output):
        if self.features is None:
            self.features = output.pooler_output.detach()

    def _step_input(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        if self._pending is not None and ids is not None:  # a decoding step's input is the token sampled last
            self.logps.append(self._pending.gather(-1, ids[:, -1:].to(self._pending.device))[:, 0])
            self._pending = None

    def _step_output(self, module, args, output):
        logp = tempered_log_softmax(output.logits[:, -1], self.temperature)
        self.entropies.append(entropy(logp))
        self._pending = logp

    def remove(self) -> None:
        for hook in self._hooks:
            hook.remove()

    def finish(self, completion_ids: list[list[int]]) -> None:
        if self._pending is not None:  # the last sampled token never came back as an input
            n = len(self.entropies) - 1
            last = torch.tensor([c[n] if len(c) > n else 0 for c in completion_ids], device=self._pending.device)
            self.logps.append(self._pending.gather(-1, last[:, None])[:, 0])
            self._pending = None

    def scores(self, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(log-probs, entropies) [B, n] of the first n completion tokens, or None when generation did not run here
        (vLLM) or produced fewer steps."""
        if len(self.logps) < n or len(self.entropies) < n or n == 0:
            return None
        return torch.stack(self.logps[:n], 1), torch.stack(self.entropies[:n], 1)
