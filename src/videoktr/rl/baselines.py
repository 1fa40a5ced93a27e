"""The two baselines the paper compares with, on our VideoGRPOTrainer: T-GRPO (Video-R1) and TW-GRPO.

T-GRPO (Video-R1). Besides the G ordered rollouts of a prompt, G // 2 rollouts are sampled on the same clip with its
frames shuffled before the processor (`temporal_unit: frame`, Video-R1's code; `patch`: pairs of frames move together). If the ordered group's mean accuracy >= mu * the shuffled group's, every
correct ordered rollout gets +alpha on its accuracy reward (mu = 0.8, alpha = 0.3). The shuffled rollouts feed the
bonus only, never the loss. "Correct" is accuracy > 0.1, as in Video-R1's code (equal to "== 1" for 0/1 accuracies;
OCR/free-form/regression accuracies are continuous). Hook: `_calculate_rewards`, the one TRL method that sees the
rollouts and returns the reward matrix (gathered over processes, one column per reward function) before TRL turns it
into advantages; the bonus is added to the accuracy column there, so advantages, logs and everything downstream see it.

TW-GRPO. Per completion position t, the divergence KL(p_i,t || m_t) of rollout i's next-token distribution from the
group's mean distribution m_t (the mean of p_j,t over the rollouts j of the group that have position t) is min-max
normalised over the rollout's valid positions, and w_t = 1 + (alpha - 1) * norm_t (alpha = 1.7). When all of a
rollout's divergences are equal (within `eps`), e.g. identical rollouts or a single valid token, norm = 0 and w = 1.
Padding gets w = 0. Hook: after `_generate_and_score_completions`, the (B,) advantages become (B, T)
`advantages[:, None] * w`, which TRL 1.16's `_compute_loss` accepts; since w > 0, min(r A w, clip(r) A w) =
w min(r A, clip(r) A): the weight scales each token's clipped policy term and nothing else (the KL term is unweighted).

Differences from the TW-GRPO authors' code (kept out on purpose, switchable where cheap):
- there, one weight vector per group (the divergence averaged over the G rollouts, `scope="group"` here);
  here, as docs/method.md (Baselines) states, each rollout's own divergences are normalised over its positions:
  `scope="rollout"`, the default;
- there, "KL" is sum_v (m/p - log(m/p) - 1) with m the mean of log-probs, and padded positions take a uniform
  distribution; here it is the true KL of p_i from the mean distribution, over the rollouts valid at t;
- there, the weight also multiplies the KL-to-reference term.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
from trl.data_utils import is_conversational

from videoktr.data.model_inputs import load_frames, mm_token_type_ids
from videoktr.rl.attribution import temporal_permutation
from videoktr.rl.grpo import VideoGRPOTrainer, encode_prompts, join_videos
from videoktr.rl.logits import chunked_log_softmax, gathered_head

log = logging.getLogger(__name__)


# -- T-GRPO: pure rule ---------------------------------------------------------------------------------------------
def group_mean(values: torch.Tensor, group_ids: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean of the non-NaN values per group id (NaN for a group without any)."""
    ok = ~torch.isnan(values)
    sums = torch.zeros(n_groups, dtype=torch.float64, device=values.device)
    counts = torch.zeros(n_groups, dtype=torch.float64, device=values.device)
    sums.index_add_(0, group_ids[ok], values[ok].double())
    counts.index_add_(0, group_ids[ok], torch.ones(int(ok.sum()), dtype=torch.float64, device=values.device))
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan"))).to(values.dtype)


def tgrpo_condition(ordered_acc: torch.Tensor, group_ids: torch.Tensor, shuffled_acc_per_group: torch.Tensor,
                    mu: float = 0.8, tol: float = 1e-6) -> torch.Tensor:
    """Per group: does the ordered group's mean accuracy reach mu * the shuffled group's? (bool, [n_groups])

    Ties count (>=, with `tol` absorbing float rounding of mu * acc). A group without shuffled rollouts (NaN) or
    without a scorable ordered rollout never qualifies.
    """
    ordered = group_mean(ordered_acc, group_ids, shuffled_acc_per_group.numel())
    shuffled = shuffled_acc_per_group.to(ordered.dtype)
    ok = ~torch.isnan(ordered) & ~torch.isnan(shuffled)
    return ok & (ordered.nan_to_num(0.0) >= mu * shuffled.nan_to_num(0.0) - tol)


def tgrpo_bonus(ordered_acc: torch.Tensor, group_ids: torch.Tensor, shuffled_acc_per_group: torch.Tensor,
                mu: float = 0.8, alpha: float = 0.3, correct_threshold: float = 0.1) -> torch.Tensor:
    """The bonus per ordered rollout [B]: alpha on the correct rollouts (accuracy > threshold) of qualifying groups.

    `group_ids` [B] index `shuffled_acc_per_group` [n_groups] (the shuffled rollouts' mean accuracy per group).
    """
    qualifies = tgrpo_condition(ordered_acc, group_ids, shuffled_acc_per_group, mu)[group_ids]
    correct = ordered_acc.nan_to_num(-math.inf) > correct_threshold
    return (qualifies & correct).to(ordered_acc.dtype) * alpha


def shuffle_frames(frames: np.ndarray, perm: torch.Tensor) -> np.ndarray:
    """Decoded frames in a new order (Video-R1's T-GRPO: `video_inputs[0][torch.randperm(n)]`)."""
    return np.asarray(frames)[perm.numpy()]


def shuffle_frame_pairs(frames: np.ndarray, perm: torch.Tensor, patch: int = 2) -> np.ndarray:
    """Frames reordered by temporal patch (`patch` consecutive frames move together); a ragged tail stays last."""
    n = len(frames) // patch
    head = frames[: n * patch].reshape(n, patch, *frames.shape[1:])[perm.numpy()].reshape(n * patch, *frames.shape[1:])
    return np.concatenate([head, frames[n * patch:]])


class TGRPOTrainer(VideoGRPOTrainer):
    """T-GRPO (Video-R1): a temporal bonus from extra rollouts on shuffled frames.

    Distributed-safe: the shuffled rollouts are spread over the rows that carry an even in-group index below
    2 * (G // 2) (so exactly G // 2 per group whichever process holds them), their accuracies are gathered like TRL
    gathers the rewards, and each group's shuffle order is drawn from (seed, step, global group index), so no
    process needs to talk to another to agree on it. Training only: eval batches get no bonus (and no extra rollouts).
    The shuffled rollouts are scored by the run's own accuracy reward, so a counting reward (rl.AccuracyReward's
    seen / unparseable) counts them too.
    """

    def __init__(self, *args, mu: float = 0.8, alpha: float = 0.3, correct_threshold: float = 0.1,
                 accuracy_reward: str = "accuracy", temporal_unit: str = "frame", **kwargs):
        super().__init__(*args, **kwargs)
        self.mu, self.alpha, self.correct_threshold = mu, alpha, correct_threshold
        if temporal_unit not in ("frame", "patch"):
            raise ValueError(f"temporal_unit must be 'frame' or 'patch', not {temporal_unit!r}")
        self.temporal_unit = temporal_unit
        if accuracy_reward not in self.reward_func_names:
            raise ValueError(f"T-GRPO needs the accuracy reward {accuracy_reward!r}; have {self.reward_func_names}")
        self.accuracy_index = self.reward_func_names.index(accuracy_reward)
        if isinstance(self.reward_funcs[self.accuracy_index], torch.nn.Module):
            raise ValueError("T-GRPO scores its shuffled rollouts with a callable accuracy reward, not a reward model")
        # every process samples shuffled rollouts in the same step (generation is a collective under ZeRO-3), so
        # each must hold whole groups
        local = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if local % self.num_generations or self.num_generations < 2:
            raise ValueError(f"T-GRPO needs whole groups of at least 2 per process: {local} rows, groups of "
                             f"{self.num_generations}")

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if not self.model.training:
            return rewards_per_func
        G = self.num_generations
        offset = self.accelerator.process_index * len(prompts)  # TRL's process slice of the gathered rows
        local = [i for i in range(len(prompts)) if (offset + i) % G < 2 * (G // 2) and (offset + i) % 2 == 0]
        shuffled = torch.full((len(prompts),), float("nan"), device=rewards_per_func.device)
        if local:
            shuffled[local] = self.shuffled_accuracy([inputs[i] for i in local], [prompts[i] for i in local],
                                                     [(offset + i) // G for i in local])
        shuffled = self.accelerator.gather(shuffled)  # [N] over all processes, NaN where no shuffled rollout
        n_groups = rewards_per_func.size(0) // G
        group_ids = torch.arange(rewards_per_func.size(0), device=rewards_per_func.device) // G
        shuffled_per_group = group_mean(shuffled, group_ids, n_groups)
        ordered = rewards_per_func[:, self.accuracy_index].clone()
        bonus = tgrpo_bonus(ordered, group_ids, shuffled_per_group, self.mu, self.alpha, self.correct_threshold)
        rewards_per_func[:, self.accuracy_index] += bonus  # the accuracy column: TRL's sum/normalise sees it

        applied = tgrpo_condition(ordered, group_ids, shuffled_per_group, self.mu)
        metrics = self._metrics["train"]
        metrics["tgrpo/bonus_applied"].append(applied.float().mean().item())
        metrics["tgrpo/shuffled_accuracy"].append(torch.nanmean(shuffled).item())
        metrics["tgrpo/ordered_accuracy"].append(torch.nanmean(ordered).item())  # TRL's accuracy mean includes bonus
        metrics["tgrpo/bonus_share"].append((bonus > 0).float().mean().item())
        return rewards_per_func

    def permutation(self, group: int, n_patches: int) -> torch.Tensor:
        # the optimizer step, not TRL's _step (reset on resume): a resumed run redraws what the first run drew
        gen = torch.Generator().manual_seed(int(self.args.seed) * 1_000_003 + self.state.global_step * 7_919 + group)
        return temporal_permutation(n_patches, gen)

    @torch.no_grad()
    def shuffled_accuracy(self, rows: list[dict], prompts: list, groups: list[int]) -> torch.Tensor:
        """Sample one completion per row on its clip with frames (or temporal patches) shuffled; their accuracy
        rewards."""
        patch = getattr(self.processing_class.video_processor, "temporal_patch_size", 2)
        frames = []
        for row, g in zip(rows, groups):
            f = load_frames(row, self.data_dir, self.video_cfg)
            if self.temporal_unit == "frame":
                frames.append(shuffle_frames(f, self.permutation(g, len(f))))
            else:
                frames.append(shuffle_frame_pairs(f, self.permutation(g, len(f) // patch), patch))
        prompt_ids, fields, _ = encode_prompts(self.processing_class, prompts, frames, self.video_cfg["fps"])
        # TRL's own sampler: same generation config (temperature, max_completion_length, suppressed vision tokens),
        # same unwrapping and EOS truncation as the ordered rollouts.
        completion_ids, _ = self._generate_single_turn(prompt_ids, None, fields, 1)
        texts = self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
        if is_conversational({"prompt": prompts[0]}):
            completions = [[{"role": "assistant", "content": t}] for t in texts]
        else:
            completions = texts
        keys = [k for k in rows[0] if k not in ("prompt", "completion", "completion_ids")]
        kwargs = {k: [r[k] for r in rows] for k in keys}
        scores = self.reward_funcs[self.accuracy_index](prompts=prompts, completions=completions,
                                                         completion_ids=completion_ids, trainer_state=self.state,
                                                         **kwargs)
        return torch.tensor([math.nan if s is None else float(s) for s in scores], device=self.accelerator.device)


# -- TW-GRPO: pure rule --------------------------------------------------------------------------------------------
def group_mean_kl(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(p_i,t || m_t) [G, T] for one group's log-probs [G, T, V]; m_t is the mean of p_j,t over the rollouts j
    valid at t. Positions are independent, so any slice of T gives the same values. 0 where a rollout is invalid."""
    valid = mask.bool()
    lp = logprobs.float()
    n = valid.sum(0)  # [T]
    log_mean = torch.logsumexp(lp.masked_fill(~valid[..., None], -math.inf), dim=0) - n.clamp(min=1).log()[:, None]
    log_mean = torch.where((n > 0)[:, None], log_mean, torch.zeros_like(log_mean))
    p = lp.exp()
    kl = torch.where(p > 0, p * (lp - log_mean), torch.zeros_like(p)).sum(-1)
    return kl.clamp(min=0.0).masked_fill(~valid, 0.0)


def minmax_token_weights(div: torch.Tensor, mask: torch.Tensor, alpha: float = 1.7,
                         group_ids: torch.Tensor | None = None, scope: str = "rollout",
                         eps: float = 1e-6) -> torch.Tensor:
    """w = 1 + (alpha - 1) * min-max(div) over each rollout's valid positions; w = 1 where the span <= eps; 0 on pads.

    scope="group": the divergence is first averaged over the group's rollouts valid at each position (the TW-GRPO
    authors' code), so the rollouts of a group share one weight per position.
    """
    valid = mask.bool()
    div = div.float().masked_fill(~valid, 0.0)
    if scope == "group":
        if group_ids is None:
            raise ValueError("scope='group' needs group_ids")
        out = torch.zeros_like(div)
        for g in group_ids.unique():
            rows = group_ids == g
            n = valid[rows].sum(0)
            out[rows] = (div[rows].sum(0) / n.clamp(min=1)).expand_as(div[rows])
        div = out.masked_fill(~valid, 0.0)
    elif scope != "rollout":
        raise ValueError(f"scope must be 'rollout' or 'group', not {scope!r}")
    lo = div.masked_fill(~valid, math.inf).amin(-1, keepdim=True)
    hi = div.masked_fill(~valid, -math.inf).amax(-1, keepdim=True)
    span = hi - lo
    wide = span > eps
    norm = torch.where(wide, (div - lo) / torch.where(wide, span, torch.ones_like(span)), torch.zeros_like(div))
    return (1.0 + (alpha - 1.0) * norm.clamp(0.0, 1.0)) * valid


def twgrpo_weights(logprobs: torch.Tensor | Callable[[slice], torch.Tensor], mask: torch.Tensor,
                   group_ids: torch.Tensor, alpha: float = 1.7, scope: str = "rollout",
                   eps: float = 1e-6) -> torch.Tensor:
    """TW-GRPO token weights [B, T].

    `logprobs` is [B, T, V] full-vocabulary log-probs, or a callable that returns them for one group's rows (a slice of
    consecutive rows; group ids must then be consecutive runs), so only one group's [G, T, V] is ever alive.
    """
    div = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    ids = group_ids.tolist()
    start = 0
    while start < len(ids):
        end = start
        while end < len(ids) and ids[end] == ids[start]:
            end += 1
        rows = slice(start, end)
        lp = logprobs(rows) if callable(logprobs) else logprobs[rows]
        div[rows] = group_mean_kl(lp, mask[rows])
        start = end
    return minmax_token_weights(div, mask, alpha, group_ids, scope, eps)


def completion_log_softmax(model, ids: torch.Tensor, mask: torch.Tensor, n: int, videos: dict,
                           temperature: float = 1.0, chunk: int = 64) -> Iterator[tuple[slice, torch.Tensor]]:
    """Full-vocabulary next-token log-probs of the last `n` (completion) tokens, by chunk: (positions, [b, c, V]).

    The backbone runs once with the video (as every TRL log-prob forward of VideoGRPOTrainer does); the LM head and
    log-softmax run `chunk` positions at a time, so [b, n, V] is never held. Logits are divided by the sampling
    temperature, as TRL's fused head does for the policy's log-probs.
    """
    out = model.base_model(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm_token_type_ids(ids, model.config),
                           use_cache=False, **videos)
    hidden = out.last_hidden_state[:, -n - 1:-1]  # position i predicts token i + 1
    with gathered_head(model.get_output_embeddings()) as head:  # one weight gather (ZeRO-3: ragged lengths)
        yield from chunked_log_softmax(head, hidden, temperature, chunk)


class TWGRPOTrainer(VideoGRPOTrainer):
    """TW-GRPO: token-weighted advantages from the within-group divergence of next-token distributions.

    The local generation batch must hold whole groups (per_device_train_batch_size * steps_per_generation a multiple
    of num_generations), since a group's distributions are never gathered across processes.
    """

    def __init__(self, *args, alpha: float = 1.7, scope: str = "rollout", chunk_size: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self.tw_alpha, self.tw_scope, self.tw_chunk = alpha, scope, chunk_size
        local = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if local % self.num_generations:
            raise ValueError(f"TW-GRPO needs whole groups per process: {local} rows, groups of {self.num_generations}")

    @torch.no_grad()
    def token_weights(self, output: dict) -> torch.Tensor:
        model = self.accelerator.unwrap_model(self.model)
        G = self.num_generations if self.model.training else self.num_generations_eval
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        cmask = output["completion_mask"]
        B, n = cmask.shape
        if B % G:
            if self.model.training:
                raise RuntimeError(f"TW-GRPO got {B} rows for groups of {G}: a group is split across processes")
            log.warning("TW-GRPO eval batch of %d rows holds partial groups of %d: unweighted", B, G)
            return cmask.float()
        div = torch.zeros(B, n, dtype=torch.float32, device=cmask.device)
        for start in range(0, B, G):
            rows = slice(start, start + G)
            videos = join_videos(self._videos[rows])
            for pos, lp in completion_log_softmax(model, ids[rows], mask[rows], n, videos, self.temperature,
                                                  self.tw_chunk):
                div[rows, pos] = group_mean_kl(lp, cmask[rows, pos])
        groups = torch.arange(B, device=cmask.device) // G
        return minmax_token_weights(div, cmask, self.tw_alpha, groups, self.tw_scope)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        w = self.token_weights(output)
        output["advantages"] = output["advantages"][:, None] * w.to(output["advantages"].dtype)
        mode = "train" if self.model.training else "eval"
        stats = self.accelerator.gather(torch.stack([w.sum(), output["completion_mask"].sum().float()])[None])
        stats = stats.view(-1, 2).sum(0)
        self._metrics[mode]["twgrpo/mean_weight"].append((stats[0] / stats[1].clamp(min=1)).item())
        return output
