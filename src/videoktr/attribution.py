"""Key-token attribution (Video-KTR, Eq. 2) as pure tensor functions.

Scores per completion token:
- visual:   |log p(y_t | full) - log p(y_t | video features zeroed)|
- temporal: |log p(y_t | full) - log p(y_t | temporal patches permuted)|
- entropy:  H_t of the policy's next-token distribution over the full vocabulary.
Each enabled signal selects its top r% of valid tokens per group; the key-token mask is their union.
"""

from __future__ import annotations

import math

import torch


def logprob_shift(full: torch.Tensor, perturbed: torch.Tensor, signed: bool = False) -> torch.Tensor:
    shift = full - perturbed
    return shift if signed else shift.abs()


def top_fraction_mask(scores: torch.Tensor, valid: torch.Tensor, ratio: float, groups: torch.Tensor) -> torch.Tensor:
    """Per group (rows sharing a group id), the round(ratio * n_valid) highest-scoring valid tokens.

    Exactly that many per group: ties are broken by position, so the selected share equals r within one token.
    """
    selected = torch.zeros_like(valid, dtype=torch.bool)
    for g in groups.unique():
        rows = groups == g
        s, v = scores[rows], valid[rows].bool()
        n = int(v.sum())
        k = min(n, int(math.floor(ratio * n + 0.5)))
        if k == 0:
            continue
        flat = s.masked_fill(~v, float("-inf")).flatten()
        idx = torch.topk(flat, k, sorted=False).indices
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        chosen[idx] = True
        selected[rows] = chosen.view_as(s)
    return selected


def key_token_masks(scores: dict[str, torch.Tensor], valid: torch.Tensor, ratio: float, groups: torch.Tensor,
                    signals=("E", "V", "T")) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The union mask over the enabled signals, and each signal's own selection."""
    per_signal = {s: top_fraction_mask(scores[s], valid, ratio, groups) for s in signals}
    union = torch.zeros_like(valid, dtype=torch.bool)
    for m in per_signal.values():
        union |= m
    return union, per_signal


def temporal_permutation(n_slices: int, generator: torch.Generator) -> torch.Tensor:
    """A random order of the temporal patches that is never the identity (when there are two or more)."""
    if n_slices < 2:
        return torch.arange(n_slices)
    while True:
        perm = torch.randperm(n_slices, generator=generator)
        if not torch.equal(perm, torch.arange(n_slices)):
            return perm


def permute_slices(features: torch.Tensor, grid_thw: torch.Tensor, perm: torch.Tensor, merge: int) -> torch.Tensor:
    """Reorder one clip's encoded features by temporal slice.

    Qwen2.5-VL's vision encoder attends within each temporal slice (grid_h * grid_w patches), so this equals encoding
    the permuted frames, without a second encoder run.
    """
    t, h, w = grid_thw.tolist()
    per_slice = h * w // (merge * merge)
    return features.view(t, per_slice, -1)[perm].reshape(features.shape)
