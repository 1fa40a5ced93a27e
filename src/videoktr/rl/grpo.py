"""GRPO for video on TRL: the video reaches generation, old/ref log-probs and the loss forward.

TRL 1.16's GRPOTrainer wires image inputs only: a video reaches `generate()` and is then silently dropped from every
log-prob forward, so a naive video GRPO trains text-only. `VideoGRPOTrainer` fixes that with three overrides:
- `_tokenize_prompts` encodes each prompt with its decoded clip (and remembers the clip's tensors per sample);
- `_generate_and_score_completions` carries those per-sample tensors in the batch dict, as a list, so TRL's
  shuffling and splitting keep them aligned with their rows;
- `_get_per_token_logps_and_entropies` feeds them (plus mm_token_type_ids over prompt + completion, which M-RoPE
  needs) to every forward: old, reference and the loss.
`KTRTrainer` restricts the policy loss to key tokens (see `videoktr.rl.attribution`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from trl import GRPOTrainer

from transformers.modeling_outputs import BaseModelOutputWithPooling

from videoktr.rl.attribution import (
    distribution_distance,
    key_token_masks,
    logprob_shift,
    permute_slices,
    soft_weights,
    temporal_permutation,
    threshold_mask,
    union,
    visual_perturbation,
)
from videoktr.data.model_inputs import encode, load_frames, mm_token_type_ids

log = logging.getLogger(__name__)

VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
IMAGE_ONLY_KWARGS = ("pixel_values", "image_grid_thw", "pixel_attention_mask", "spatial_shapes", "image_sizes")


def split_videos(batch) -> list[dict]:
    """The processor's flat video tensors as one dict per sample (one clip each)."""
    rows = batch["video_grid_thw"].prod(-1).tolist()
    pixels = torch.split(batch["pixel_values_videos"], rows)
    return [
        {"pixel_values_videos": p, "video_grid_thw": batch["video_grid_thw"][i:i + 1],
         "second_per_grid_ts": batch["second_per_grid_ts"][i:i + 1]}
        for i, p in enumerate(pixels)
    ]


def encode_prompts(processor, prompts: list, frames: list, fps: float) -> tuple[list, dict, dict]:
    """Chat prompts with their clips as TRL's generation takes them: unpadded prompt ids, the video fields (with
    mm_token_type_ids per row), and the processor's padded batch."""
    texts = [processor.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    batch = encode(processor, texts, frames, fps, padding_side="left")
    keep = batch["attention_mask"].bool()
    prompt_ids = [ids[m].tolist() for ids, m in zip(batch["input_ids"], keep)]
    fields = {k: batch[k] for k in VIDEO_KEYS}
    fields["mm_token_type_ids"] = [t[m].tolist() for t, m in zip(batch["mm_token_type_ids"], keep)]
    return prompt_ids, fields, batch


def join_videos(videos: list[dict]) -> dict:
    return {k: torch.cat([v[k] for v in videos]) for k in VIDEO_KEYS}


class VideoGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose dataset rows carry a clip `path` (relative to `data_dir`); every forward sees the clip."""

    def __init__(self, *args, data_dir: Path, video_cfg: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_dir, self.video_cfg = Path(data_dir), video_cfg
        self._batch_rows: list[dict] = []  # dataset rows of the generation batch in flight
        self._videos: list[dict] = []  # per-sample video tensors aligned with the rows being scored

    # -- generation -------------------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        self._batch_rows = inputs
        counted = [f for f in self.reward_funcs if hasattr(f, "unparseable")]
        before = sum(f.unparseable for f in counted)
        output = super()._generate_and_score_completions(inputs)
        output["videos"] = self._videos  # a list: TRL shuffles and splits it with the rows
        if counted:  # answers without a parseable <answer> score 0; their count is logged per step
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["rewards/unparseable"].append(sum(f.unparseable for f in counted) - before)
        return output

    def _tokenize_prompts(self, prompts: list):
        frames = [load_frames(row, self.data_dir, self.video_cfg) for row in self._batch_rows]
        prompt_ids, fields, batch = encode_prompts(self.processing_class, prompts, frames, self.video_cfg["fps"])
        self._videos = split_videos(batch)
        return prompt_ids, None, fields

    # -- every log-prob forward -------------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **image_kwargs):
        if any(image_kwargs.get(k) is not None for k in IMAGE_ONLY_KWARGS):
            raise ValueError("VideoGRPOTrainer takes video rows only; this batch carries image tensors")
        if len(self._videos) != input_ids.size(0):
            raise RuntimeError(f"{len(self._videos)} clips for {input_ids.size(0)} rows: the video left its batch")
        config = self.accelerator.unwrap_model(model).config
        batch_size = batch_size or input_ids.size(0)
        logps, entropies = [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = start + batch_size
            ids, mask = input_ids[start:end], attention_mask[start:end]
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100
            out = model(input_ids=ids, attention_mask=mask, mm_token_type_ids=mm_token_type_ids(ids, config),
                        labels=labels, fused_lm_head=True, **join_videos(self._videos[start:end]))
            logps.append(out.log_probs[:, -logits_to_keep:])
            if compute_entropy:
                entropies.append(out.entropy[:, -logits_to_keep:])
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    # -- loss -------------------------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        self._videos = inputs["videos"]
        return super()._compute_loss(model, inputs)


def global_batch_mask(accelerator, scores: torch.Tensor, valid: torch.Tensor, ratio: float) -> torch.Tensor:
    """Top r of the valid tokens of the whole global batch: one threshold over every rank's scores."""
    local = scores[valid.bool()].float()
    padded = accelerator.pad_across_processes(local, dim=0, pad_index=float("nan"))
    everything = accelerator.gather(padded)
    return threshold_mask(scores, valid, ratio, everything[~everything.isnan()])


@dataclass
class KTRSettings:
    """Every Video-KTR knob; the defaults are the paper's method."""

    ratio: float = 0.2  # top r of tokens per signal
    signals: tuple = ("E", "V", "T")
    scope: str = "group"  # where the top-r threshold is taken: group | sequence | batch (gathered across ranks)
    weighting: str = "binary"  # binary mask (paper) or soft weights: softmax | sigmoid | linear | exponential
    distance: str = "logprob"  # |log-prob difference| (paper) or a distance of full distributions (Fig. 8)
    visual_perturbation: str = "zero"  # zero | zero_half | other_clip
    temporal_perturbation: str = "shuffle"  # shuffle | reverse | segment_shuffle
    signed: bool = False  # the authors' code ranks the signed difference (full - perturbed)
    visual_mode: str = "zero_features"  # drop_attention: the authors' code removes vision tokens from attention
    mask_kl: bool = True  # the authors' code restricts the KL term to key tokens too
    chunk: int = 64  # completion positions per vocabulary projection


def completion_scores(model, full: torch.Tensor, perturbed: list[torch.Tensor], targets: torch.Tensor,
                      cfg: KTRSettings, temperature: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Entropy of the full pass and one shift score per perturbed pass for each completion token.

    `full` and each of `perturbed` are the hidden states that predict the completion tokens `targets` ([B, n, D]
    and [B, n]). The vocabulary projection runs `cfg.chunk` positions at a time: full [B, n, V] logits are never held.
    """
    n = targets.size(1)
    entropy, shifts = [], [[] for _ in perturbed]
    for start in range(0, n, cfg.chunk):
        sl = slice(start, start + cfg.chunk)
        logp = (model.lm_head(full[:, sl]).float() / temperature).log_softmax(-1)
        entropy.append(-(logp.exp() * logp).sum(-1))
        tgt = targets[:, sl, None]
        for out, h in zip(shifts, perturbed):
            logq = (model.lm_head(h[:, sl]).float() / temperature).log_softmax(-1)
            if cfg.distance == "logprob":
                out.append(logprob_shift(logp.gather(-1, tgt)[..., 0], logq.gather(-1, tgt)[..., 0], cfg.signed))
            else:
                out.append(distribution_distance(logp, logq, cfg.distance))
    return torch.cat(entropy, 1), [torch.cat(x, 1) for x in shifts]


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


def token_logprobs(model, hidden: torch.Tensor, targets: torch.Tensor, chunk: int, temperature: float) -> torch.Tensor:
    """log p(target) for hidden states [B, n, D] predicting `targets` [B, n], `chunk` positions per projection."""
    out = []
    for start in range(0, targets.size(1), chunk):
        logq = (model.lm_head(hidden[:, start:start + chunk]).float() / temperature).log_softmax(-1)
        out.append(logq.gather(-1, targets[:, start:start + chunk, None])[..., 0])
    return torch.cat(out, 1)


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
        logp = (output.logits[:, -1].float() / self.temperature).log_softmax(-1)
        self.entropies.append(-(logp.exp() * logp).sum(-1))
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


class KTRTrainer(VideoGRPOTrainer):
    """Video-KTR: only key tokens (top r% by visual, temporal or entropy score, united) carry the loss.

    The attribution passes cost little beside a GRPO step:
    - generation's own work is kept (`GenerationTap`): the clips' vision features, which are then perturbed (no
      second encoder run), and each sampled token's log-probability and entropy (no full-video pass; a distance
      between whole distributions, an ablation, runs the full pass);
    - rollouts of one question share their prompt: each counterfactual prompt (visual, temporal) runs once per
      group and its KV cache serves the group's completions;
    - the variants run together, as one batched no-grad decoder forward for prompts and one for completions, with
      the full pass's M-RoPE positions; the vocabulary projection is chunked.
    """

    def __init__(self, *args, ktr: KTRSettings | None = None, token_log_dir: Path | None = None,
                 diagnostics_every: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.ktr = ktr or KTRSettings()
        self.token_log_dir = Path(token_log_dir) if token_log_dir else None
        self.diagnostics_every = diagnostics_every
        self.gradient_rows: list[dict] = []
        self._perm_rng = torch.Generator()  # reseeded at every step (perturbation_seed)
        self._tap: GenerationTap | None = None  # what the batch's generation computed, for the attribution
        self._prompt_group: torch.Tensor | None = None  # per row of the batch in flight, set by the attribution

    # -- scores -----------------------------------------------------------------------------------------------
    def video_features(self, model, reps: list[int]) -> list[torch.Tensor]:
        """Vision features of the representative rows' clips: generation's when it ran here, else one encoder run."""
        sizes = [int(v["video_grid_thw"].prod()) // model.model.visual.spatial_merge_size ** 2 for v in self._videos]
        kept = self._tap.features if self._tap is not None else None
        if kept is not None and kept.size(0) == sum(sizes):
            per_clip = torch.split(kept, sizes)
            return [per_clip[r] for r in reps]
        videos = join_videos([self._videos[r] for r in reps])
        return list(model.model.get_video_features(videos["pixel_values_videos"], videos["video_grid_thw"]).pooler_output)

    def perturbation_seed(self) -> int:
        """The random perturbations' seed for this step and process: a function of (seed, step, rank), never a
        stream carried across steps, so a run resumed from a checkpoint draws what the uninterrupted run drew."""
        return self.args.seed * 1_000_003 + self.state.global_step * 7_919 + self.accelerator.process_index

    @torch.no_grad()
    def attribution_scores(self, output: dict) -> dict[str, torch.Tensor]:
        """Visual, temporal and entropy scores per completion token of the batch in flight."""
        model = self.accelerator.unwrap_model(self.model)
        training = model.training
        model.eval()  # in training mode, gradient checkpointing would switch the KV cache off
        try:
            # the precision generation ran in (mixed-precision autocast on GPU), so full and perturbed passes compare
            # like with like; the log-softmax itself runs in float32 (completion_scores)
            with self.accelerator.autocast():
                return self._attribution_scores(model, output)
        finally:
            model.train(training)

    def _attribution_scores(self, model, output: dict) -> dict[str, torch.Tensor]:
        cfg = self.ktr
        pids, pmask = output["prompt_ids"], output["prompt_mask"]
        cids, cmask = output["completion_ids"], output["completion_mask"]
        ids, mask = torch.cat([pids, cids], dim=1), torch.cat([pmask, cmask], dim=1)
        p = pids.size(1)
        videos = join_videos(self._videos)
        positions, _ = model.model.get_rope_index(ids, mm_token_type_ids(ids, model.config),
                                                  video_grid_thw=videos["video_grid_thw"],
                                                  second_per_grid_ts=videos["second_per_grid_ts"], attention_mask=mask)
        self._perm_rng.manual_seed(self.perturbation_seed())
        reps, group = prompt_groups(pids, pmask, self._videos)
        self._prompt_group = group
        feats = self.video_features(model, reps)
        rep_mask = pmask[reps]

        # the full pass's log-probs and entropies: generation's when it ran here (the log-prob distance needs no more)
        tapped = self._tap.scores(cids.size(1)) if self._tap is not None and cfg.distance == "logprob" else None
        # each variant: the representatives' video features and prompt attention mask
        variants = [] if tapped is not None else [(feats, rep_mask)]
        if "V" in cfg.signals:
            if cfg.visual_mode == "drop_attention":  # the authors' code: vision tokens leave the attention mask
                variants.append((feats, rep_mask.masked_fill(pids[reps] == model.config.video_token_id, 0)))
            else:  # one draw per question group, shared by its rollouts
                variants.append((visual_perturbation(feats, cfg.visual_perturbation, self._perm_rng, 1), rep_mask))
        if "T" in cfg.signals:
            merge = model.model.visual.spatial_merge_size
            grids = videos["video_grid_thw"][reps]
            variants.append(([permute_slices(f, g, temporal_permutation(int(g[0]), self._perm_rng,
                                                                        cfg.temporal_perturbation), merge)
                              for f, g in zip(feats, grids)], rep_mask))
        k, u = len(variants), len(reps)
        if k == 0:  # entropy only, from generation
            return {"E": tapped[1]}

        # prompts: k x groups rows, one forward, its KV cache kept
        rep_videos = {key: val[reps].repeat(k, *[1] * (val.dim() - 1)) for key, val in videos.items()
                      if key != "pixel_values_videos"}
        prompt_ids = pids[reps].repeat(k, 1)
        prefix = model.model(input_ids=prompt_ids, attention_mask=torch.cat([m for _, m in variants]),
                             position_ids=positions[:, reps, :p].repeat(1, k, 1),
                             mm_token_type_ids=mm_token_type_ids(prompt_ids, model.config), use_cache=True,
                             mm_encoder_outputs={"video": BaseModelOutputWithPooling(
                                 pooler_output=tuple(f for fs, _ in variants for f in fs))},
                             **rep_videos)
        # completions: each row continues its group's cached prompt, per variant
        rows = (torch.arange(k, device=group.device)[:, None] * u + group[None]).flatten()
        cache = prefix.past_key_values
        cache.batch_select_indices(rows)
        cont = model.model.language_model(
            input_ids=cids.repeat(k, 1), past_key_values=cache, use_cache=True,
            attention_mask=torch.cat([torch.cat([m[group], cmask], dim=1) for _, m in variants]),
            position_ids=positions[:, :, p:].repeat(1, k, 1)).last_hidden_state
        # the hidden state before each completion token predicts it: the prompt's last, then the completion's own
        predictive = torch.cat([prefix.last_hidden_state[rows, -1:], cont[:, :-1]], dim=1).chunk(k)
        if tapped is None:
            entropy, shifts = completion_scores(model, predictive[0], list(predictive[1:]), cids, cfg,
                                                self.temperature)
        else:
            full, entropy = tapped
            shifts = [logprob_shift(full, token_logprobs(model, h, cids, cfg.chunk, self.temperature), cfg.signed)
                      for h in predictive]
        scores = {"E": entropy}
        scores.update(zip([s for s in ("V", "T") if s in cfg.signals], shifts))
        return scores

    # -- selection --------------------------------------------------------------------------------------------
    def select(self, scores: dict, valid: torch.Tensor) -> tuple[torch.Tensor, dict]:
        cfg = self.ktr
        if cfg.scope == "batch":
            per_signal = {name: global_batch_mask(self.accelerator, scores[name], valid, cfg.ratio)
                          for name in cfg.signals}
            return union(per_signal, valid), per_signal
        rows = torch.arange(valid.size(0), device=valid.device)
        if cfg.scope == "sequence":
            groups = rows
        else:  # the rollouts of one question (same prompt and clip) as the attribution found them in the batch
            groups = self._prompt_group if self._prompt_group is not None else rows // self.num_generations
        return key_token_masks({k: scores[k] for k in cfg.signals}, valid, cfg.ratio, groups, cfg.signals)

    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        tap = GenerationTap(self.accelerator.unwrap_model(self.model), self.temperature)
        try:
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        finally:
            tap.remove()
        tap.finish(completion_ids)
        self._tap = tap
        return completion_ids, logprobs

    def _generate_and_score_completions(self, inputs):
        self._tap = None
        output = super()._generate_and_score_completions(inputs)
        cfg = self.ktr
        valid = output["completion_mask"].bool()
        scores = self.attribution_scores(output)
        key, per_signal = self.select(scores, valid)
        mode = "train" if self.model.training else "eval"
        total = valid.sum().clamp(min=1)
        self._metrics[mode]["ktr/union_share"].append((key.sum() / total).item())
        for name, m in per_signal.items():
            self._metrics[mode][f"ktr/{name}_share"].append((m.sum() / total).item())
        if self.token_log_dir is not None and mode == "train":
            self.write_token_log(inputs, output, scores, per_signal, key)
        if cfg.weighting != "binary":  # soft weights scale each token's advantage; every valid token stays in
            w = soft_weights({k: scores[k] for k in cfg.signals}, valid, cfg.ratio, cfg.weighting)
            adv = output["advantages"]
            output["advantages"] = (adv[:, None] if adv.dim() == 1 else adv) * w
            return output
        key = key.to(output["completion_mask"].dtype)
        if cfg.mask_kl:
            # TRL multiplies `tool_mask` into the loss mask only (attention still sees every token), so policy
            # and KL terms both cover key tokens, as in the authors' code.
            output["tool_mask"] = key if "tool_mask" not in output else output["tool_mask"] * key
            # TRL counted the loss tokens before this mask existed; token-level losses (dapo) divide by the count
            loss_mask = output["completion_mask"] * output["tool_mask"]
            output["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()
        else:  # policy term on key tokens only, KL on every token: zero the advantage elsewhere
            adv = output["advantages"]
            output["advantages"] = (adv[:, None] if adv.dim() == 1 else adv) * key
        output["key_mask"] = key
        return output

    # -- token log --------------------------------------------------------------------------------------------
    def write_token_log(self, inputs, output, scores, per_signal, key) -> None:
        """One Parquet part per step: every completion token with its scores and selections."""
        import pandas as pd

        valid = output["completion_mask"].bool()
        ids = output["completion_ids"]
        b, t = torch.nonzero(valid, as_tuple=True)
        tok = self.processing_class.tokenizer
        step = self.state.global_step
        frame = pd.DataFrame({
            "run": self.args.run_name or "",
            "step": step,
            "rank": self.accelerator.process_index,  # (step, rank, sample_id) names one completion
            "sample_id": [f"{inputs[i]['problem_id']}#{i}" for i in b.tolist()],
            "problem_id": [str(inputs[i]["problem_id"]) for i in b.tolist()],
            "position": t.tolist(),
            "token_id": ids[b, t].tolist(),
            "token_text": tok.convert_ids_to_tokens(ids[b, t].tolist()),
            "token_str": [tok.decode([i]) for i in ids[b, t].tolist()],
            **{f"score_{k}": scores[k][b, t].float().cpu().numpy() for k in scores},
            **{f"selected_{k}": per_signal[k][b, t].cpu().numpy() for k in per_signal},
            "key": key[b, t].cpu().numpy(),
            "advantage": output["advantages"][b].float().cpu().numpy() if output["advantages"].dim() == 1 else
            output["advantages"][b, t].float().cpu().numpy(),
        })
        self.token_log_dir.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(self.token_log_dir / f"step-{step:06d}-rank{self.accelerator.process_index}.parquet",
                         index=False)

    # -- gradient diagnostics (paper appendix B.1) ------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        if self.diagnostics_every and model.training and "key_mask" in inputs and \
                self.state.global_step % self.diagnostics_every == 0:
            self.gradient_rows.append(self.gradient_diagnostics(model, inputs))
        return super()._compute_loss(model, inputs)

    def gradient_diagnostics(self, model, inputs) -> dict:
        """Final-layer gradients of the selected-token and residual-token losses vs the all-token loss."""
        params = [p for p in self.accelerator.unwrap_model(model).model.language_model.layers[-1].parameters()
                  if p.requires_grad]
        valid = inputs["completion_mask"]
        grads, losses = {}, {}
        for name, m in {"full": valid, "selected": inputs["key_mask"], "residual": valid * (1 - inputs["key_mask"])}.items():
            loss = VideoGRPOTrainer._compute_loss(self, model, {**inputs, "tool_mask": m})
            losses[name] = loss.item()
            grads[name] = torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, allow_unused=False)])
        cos = torch.nn.functional.cosine_similarity
        per_seq = (inputs["advantages"] if inputs["advantages"].dim() == 1 else inputs["advantages"].mean(-1))
        return {
            "step": self.state.global_step,
            **{f"loss_{k}": v for k, v in losses.items()},
            **{f"grad_norm_{k}": g.norm().item() for k, g in grads.items()},
            "cos_selected_full": cos(grads["selected"], grads["full"], dim=0).item(),
            "cos_residual_full": cos(grads["residual"], grads["full"], dim=0).item(),
            "advantage_variance": per_seq.float().var().item() if per_seq.numel() > 1 else 0.0,
        }
