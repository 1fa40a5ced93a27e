"""Key-token attribution (Video-KTR, Eq. 2) as pure tensor functions.

Scores per completion token:
- visual:   |log p(y_t | full) - log p(y_t | video perturbed)|   (default perturbation: features zeroed)
- temporal: |log p(y_t | full) - log p(y_t | frames reordered)|   (default: random shuffle of the decoded frames;
  `temporal_unit: patch` reorders the encoded 2-frame temporal patches instead)
- entropy:  H_t of the policy's next-token distribution over the full vocabulary.
Each enabled signal selects its top r% of valid tokens within a scope (group, sequence or global batch); the
key-token mask is their union. Ablations swap the log-prob difference for a distance between full next-token
distributions, or the binary mask for soft weights.
"""

from __future__ import annotations

import math

import torch

DISTANCES = ("logprob", "l1", "l2", "kl", "js", "cosine", "hellinger")
WEIGHTINGS = ("binary", "softmax", "sigmoid", "linear", "exponential")
VISUAL_PERTURBATIONS = ("zero", "zero_half", "other_clip")
TEMPORAL_PERTURBATIONS = ("shuffle", "reverse", "segment_shuffle")


def logprob_shift(full: torch.Tensor, perturbed: torch.Tensor, signed: bool = False) -> torch.Tensor:
    shift = full - perturbed
    return shift if signed else shift.abs()


def distribution_distance(logp: torch.Tensor, logq: torch.Tensor, kind: str) -> torch.Tensor:
    """Distance between next-token distributions given as log-probs [..., V]; reduces the last dimension."""
    p, q = logp.exp(), logq.exp()
    if kind == "l1":
        return (p - q).abs().sum(-1)
    if kind == "l2":
        return (p - q).pow(2).sum(-1).sqrt()
    if kind == "kl":
        return (p * (logp - logq)).sum(-1)
    if kind == "js":
        logm = torch.logaddexp(logp, logq) - math.log(2)
        return 0.5 * (p * (logp - logm)).sum(-1) + 0.5 * (q * (logq - logm)).sum(-1)
    if kind == "cosine":
        return 1 - torch.nn.functional.cosine_similarity(p, q, dim=-1)
    if kind == "hellinger":
        return ((p.sqrt() - q.sqrt()).pow(2).sum(-1) / 2).clamp(min=0).sqrt()
    raise ValueError(f"unknown distance {kind!r}; known: {DISTANCES}")


NO_SPREAD = ("top_r", "none")  # what a signal selects in a scope where all its valid scores are equal
# Scores closer than this are equal (ties; no spread). The same token's float32 log-prob from two passes of
# different batch shapes (generation's steps, the batched counterfactual) differs by up to about 1e-6, so a static
# clip's temporal scores are 0 up to such noise (measured: 0 or 4.8e-7 on the tiny world).
TIE_ATOL = 1e-5


def top_fraction_mask(scores: torch.Tensor, valid: torch.Tensor, ratio: float, groups: torch.Tensor,
                      no_spread: str = "top_r") -> torch.Tensor:
    """Per group (rows sharing a group id), the round(ratio * n_valid) highest-scoring valid tokens.

    Exactly that many per group: ties are broken by position, so the selected share equals r within one token.
    `no_spread`: in a group whose valid scores are all equal (within TIE_ATOL; no spread: the temporal score of a
    static clip is 0 on every token) `top_r` still takes round(r * n) tokens, by position (the paper, the authors'
    code); `none` takes no token (a signal with no spread selects nothing).
    """
    if no_spread not in NO_SPREAD:
        raise ValueError(f"unknown no_spread {no_spread!r}; known: {NO_SPREAD}")
    selected = torch.zeros_like(valid, dtype=torch.bool)
    for g in groups.unique():
        rows = groups == g
        s, v = scores[rows], valid[rows].bool()
        n = int(v.sum())
        k = min(n, int(math.floor(ratio * n + 0.5)))
        if k == 0 or (no_spread == "none" and _flat(s[v])):
            continue
        flat = s.masked_fill(~v, float("-inf")).flatten()
        chosen = torch.zeros_like(flat, dtype=torch.bool)
        chosen[torch.topk(flat, k, sorted=False).indices] = True
        selected[rows] = chosen.view_as(s)
    return selected


def _flat(values: torch.Tensor) -> bool:
    """No spread: every value equal within TIE_ATOL (or none)."""
    return values.numel() == 0 or bool(values.max() - values.min() <= TIE_ATOL)


def threshold_mask(scores: torch.Tensor, valid: torch.Tensor, ratio: float, all_valid_scores: torch.Tensor,
                   no_spread: str = "top_r"):
    """Global-batch scope: one threshold, the (1 - r) quantile of every rank's valid scores (gathered by caller).

    Every token at or above it is taken, so tied scores at the threshold are all taken (all valid tokens when every
    score is equal); `no_spread: none` takes none then."""
    if no_spread not in NO_SPREAD:
        raise ValueError(f"unknown no_spread {no_spread!r}; known: {NO_SPREAD}")
    if all_valid_scores.numel() == 0 or (no_spread == "none" and _flat(all_valid_scores)):
        return torch.zeros_like(valid, dtype=torch.bool)
    return (scores >= batch_threshold(all_valid_scores, ratio)) & valid.bool()


def batch_threshold(all_valid_scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """The lowest of the round(r * n) highest of every rank's valid scores (at least one)."""
    k = max(1, int(math.floor(ratio * all_valid_scores.numel() + 0.5)))
    return torch.topk(all_valid_scores.float(), k).values.min()


def ties_at_threshold(scores: torch.Tensor, selected: torch.Tensor, valid: torch.Tensor,
                      groups: torch.Tensor | None = None, all_valid_scores: torch.Tensor | None = None,
                      ratio: float | None = None) -> torch.Tensor:
    """The selected tokens that sit in a tie at their scope's threshold: their score equals the scope's threshold
    (its lowest selected score; equal: within TIE_ATOL) and at least one other valid token of the scope has that
    score, so the score alone
    did not pick them (top_fraction_mask broke the tie by position; threshold_mask took the whole tie). Scopes: rows
    sharing a group id (`groups`), or the global batch (`all_valid_scores`, every rank's valid scores, and `ratio`,
    as threshold_mask gets them)."""
    v, sel = valid.bool(), selected.bool() & valid.bool()
    tied = torch.zeros_like(sel)
    if all_valid_scores is not None:
        if not sel.any():
            return tied
        everything = all_valid_scores.float()
        threshold = batch_threshold(everything, ratio)
        if int(((everything - threshold).abs() <= TIE_ATOL).sum()) > 1:
            tied = sel & ((scores.float() - threshold).abs() <= TIE_ATOL)
        return tied
    for g in groups.unique():
        rows = groups == g
        s, m = scores[rows], sel[rows]
        if not m.any():
            continue
        threshold = s[m].min()
        if int(((s[v[rows]] - threshold).abs() <= TIE_ATOL).sum()) > 1:
            tied[rows] = m & ((s - threshold).abs() <= TIE_ATOL)
    return tied


def key_token_masks(scores: dict[str, torch.Tensor], valid: torch.Tensor, ratio: float, groups: torch.Tensor,
                    signals=("E", "V", "T"), no_spread: str = "top_r") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The union mask over the enabled signals, and each signal's own selection."""
    per_signal = {s: top_fraction_mask(scores[s], valid, ratio, groups, no_spread) for s in signals}
    return union(per_signal, valid), per_signal


def union(per_signal: dict[str, torch.Tensor], valid: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(valid, dtype=torch.bool)
    for m in per_signal.values():
        out |= m
    return out


def soft_weights(scores: dict[str, torch.Tensor], valid: torch.Tensor, ratio: float, kind: str,
                 temperature: float = 1.0) -> torch.Tensor:
    """Soft token weights instead of the binary mask (paper Fig. 7), mean 1 over each sequence's valid tokens.

    Each signal is min-max normalised per sequence and the signals are combined by their maximum (the soft
    counterpart of the union). sigmoid centres on the sequence's (1 - r) quantile, so about r of the tokens get
    weight above one half.
    """
    v = valid.bool()
    normed = []
    for s in scores.values():
        lo = s.masked_fill(~v, float("inf")).amin(-1, keepdim=True)
        hi = s.masked_fill(~v, float("-inf")).amax(-1, keepdim=True)
        normed.append(((s - lo) / (hi - lo).clamp(min=1e-8)).masked_fill(~v, 0))
    c = torch.stack(normed).amax(0)
    if kind == "softmax":
        w = torch.softmax((c / temperature).masked_fill(~v, float("-inf")), -1).nan_to_num(0)
    elif kind == "sigmoid":
        q = torch.stack([row[m].quantile(1 - ratio) if m.any() else row.new_tensor(0.0) for row, m in zip(c, v)])
        w = torch.sigmoid((c - q[:, None]) / (0.1 * temperature))
    elif kind == "linear":
        w = c
    elif kind == "exponential":
        w = torch.expm1(c / temperature)
    else:
        raise ValueError(f"unknown weighting {kind!r}; known: {WEIGHTINGS}")
    w = w.masked_fill(~v, 0)
    mean = w.sum(-1, keepdim=True) / v.sum(-1, keepdim=True).clamp(min=1)
    return w / mean.clamp(min=1e-8)


# -- perturbations of precomputed vision features (one clip: [t * h * w / merge^2, D]) ------------------------

def temporal_permutation(n_slices: int, generator: torch.Generator, kind: str = "shuffle") -> torch.Tensor:
    """A new order of the temporal patches; never the identity when there are two or more."""
    ident = torch.arange(n_slices)
    if n_slices < 2:
        return ident
    if kind == "reverse":
        return ident.flip(0)
    if kind == "segment_shuffle":  # keep order inside 2..4 contiguous segments, permute the segments
        n_seg = min(4, n_slices)
        bounds = torch.linspace(0, n_slices, n_seg + 1).round().long().tolist()
        segments = [ident[a:b] for a, b in zip(bounds, bounds[1:])]
        order = temporal_permutation(n_seg, generator)
        return torch.cat([segments[i] for i in order])
    if kind != "shuffle":
        raise ValueError(f"unknown temporal perturbation {kind!r}; known: {TEMPORAL_PERTURBATIONS}")
    while True:
        perm = torch.randperm(n_slices, generator=generator)
        if not torch.equal(perm, ident):
            return perm


def permute_slices(features: torch.Tensor, grid_thw: torch.Tensor, perm: torch.Tensor, merge: int) -> torch.Tensor:
    """Reorder one clip's encoded features by temporal slice.

    Qwen2.5-VL's vision encoder attends within each temporal slice (grid_h * grid_w patches), so this equals encoding
    the permuted frames, without a second encoder run.
    """
    t, h, w = grid_thw.tolist()
    return features.view(t, h * w // (merge * merge), -1)[perm].reshape(features.shape)


def other_clip_in_batch(features: list[torch.Tensor], group_size: int = 1) -> bool:
    """Can `other_clip` take the next prompt group's clip here: two groups or more, with equal token counts?"""
    n = len(features)
    return n > group_size and all(features[(i + group_size) % n].shape == f.shape for i, f in enumerate(features))


def visual_perturbation(features: list[torch.Tensor], kind: str, generator: torch.Generator,
                        group_size: int, donors: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Perturbed features per clip: all zero, a random half of the video tokens zero, or another clip's features.

    `other_clip`: the next prompt group's clip in the batch, or `donors` when given (KTRTrainer passes clips of other
    videos of the training set, encoded at each clip's grid, when the device batch holds one group)."""
    if kind == "zero":
        return [torch.zeros_like(f) for f in features]
    if kind == "zero_half":
        out = []
        for f in features:
            drop = torch.randperm(f.size(0), generator=generator)[: f.size(0) // 2]
            g = f.clone()
            g[drop] = 0
            out.append(g)
        return out
    if kind == "other_clip":  # the clip of the next prompt group (rollouts of one group share their clip)
        if donors is not None:
            if len(donors) != len(features) or any(d.shape != f.shape for d, f in zip(donors, features)):
                raise ValueError("visual_perturbation 'other_clip': each donor clip needs its clip's token count")
            return list(donors)
        n = len(features)
        if n <= group_size:
            raise ValueError("visual_perturbation 'other_clip' needs at least two prompt groups per device batch")
        donors = [features[(i + group_size) % n] for i in range(n)]
        if any(d.shape != f.shape for d, f in zip(donors, features)):
            raise ValueError("visual_perturbation 'other_clip' needs clips with the same number of video tokens")
        return donors
    raise ValueError(f"unknown visual perturbation {kind!r}; known: {VISUAL_PERTURBATIONS}")
