"""Video-KTR on VideoGRPOTrainer: attribution scores per completion token, key-token selection, the masked loss.

The method and its ablations: docs/method.md. Pure scores and selection rules: `videoktr.rl.attribution`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, make_dataclass
from pathlib import Path

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from videoktr.config import schema_defaults
from videoktr.data.model_inputs import load_frames, mm_token_type_ids, video_metadata
from videoktr.rl import gradients
from videoktr.rl.attribution import (
    distribution_distance,
    key_token_masks,
    logprob_shift,
    other_clip_in_batch,
    permute_slices,
    soft_weights,
    temporal_permutation,
    threshold_mask,
    union,
    visual_perturbation,
)
from videoktr.rl.cost_meter import CostMeter
from videoktr.rl.grpo import VideoGRPOTrainer, join_videos
from videoktr.rl.logits import chunked_log_softmax, entropy, head_log_softmax, tempered_log_softmax, token_logprobs
from videoktr.rl.token_log import write_token_log


# {knob: default} of Video-KTR: the run properties of the config schema that belong to no other method
KNOBS = {k: tuple(v) if isinstance(v, list) else v for k, v in schema_defaults("runs", "*").items()
         if k != "sft_model" and not k.startswith(("tgrpo_", "twgrpo_"))}


@dataclass
class KTRSettings(make_dataclass("KTRKnobs", [(k, type(v), v) for k, v in KNOBS.items()],
                                 namespace={"__module__": __name__})):
    """Every Video-KTR knob. Fields and defaults (the paper's method) are the config schema's runs.* properties
    (workflow/schemas/config.schema.yaml), plus `chunk`, which is no method knob."""

    chunk: int = 64  # completion positions per vocabulary projection

    @classmethod
    def from_run(cls, run: dict) -> KTRSettings:
        """The settings of a config run (schema defaults where it names none)."""
        return cls(**{k: tuple(run[k]) if k == "signals" else run[k] for k in KNOBS if k in run})


def global_batch_mask(accelerator, scores: torch.Tensor, valid: torch.Tensor, ratio: float) -> torch.Tensor:
    """Top r of the valid tokens of the whole global batch: one threshold over every rank's scores."""
    local = scores[valid.bool()].float()
    padded = accelerator.pad_across_processes(local, dim=0, pad_index=float("nan"))
    everything = accelerator.gather(padded)
    return threshold_mask(scores, valid, ratio, everything[~everything.isnan()])


def completion_scores(model, full: torch.Tensor, perturbed: list[torch.Tensor], targets: torch.Tensor,
                      cfg: KTRSettings, temperature: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Entropy of the full pass and one shift score per perturbed pass for each completion token.

    `full` and each of `perturbed` are the hidden states that predict the completion tokens `targets` ([B, n, D]
    and [B, n]). The vocabulary projection runs `cfg.chunk` positions at a time: full [B, n, V] logits are never held.
    """
    entropies, shifts = [], [[] for _ in perturbed]
    for sl, logp in chunked_log_softmax(model.lm_head, full, temperature, cfg.chunk):
        entropies.append(entropy(logp))
        tgt = targets[:, sl, None]
        for out, h in zip(shifts, perturbed):
            logq = head_log_softmax(model.lm_head, h[:, sl], temperature)
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


@contextmanager
def unmetered(trainer):
    """Work that Table 4's cost must not include (gradient diagnostics): the run's CostMeter skips the forwards inside
    (as it skips generation's) and its wall clock starts later by the time spent, so time, forward latency and FLOPs
    are those of the training step alone, as for the methods without diagnostics."""
    meters = [cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CostMeter)]
    before = [m.generating for m in meters]
    for m in meters:
        m.generating = True
    start = time.perf_counter()
    try:
        yield
    finally:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        spent = time.perf_counter() - start
        trainer.diagnostics_seconds += spent
        for m, b in zip(meters, before):
            m.generating = b
            if hasattr(m, "started"):
                m.started += spent


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


class KTRTrainer(VideoGRPOTrainer):
    """Video-KTR: only key tokens (top r% by visual, temporal or entropy score, united) carry the loss.

    From score to loss, per generation batch (`_generate_and_score_completions`):
    1. `attribution_scores`: counterfactual passes give each completion token its scores (E, V, T), by the pure
       rules of `videoktr.rl.attribution`;
    2. `select`: top r per signal in its scope, united: the key mask;
    3. `restrict_loss`: the key mask goes in as `tool_mask`, which TRL's `_compute_loss` multiplies into its loss
       mask (`VideoGRPOTrainer` in `videoktr.rl.grpo` feeds that forward the video).

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
        self.diagnostics_seconds = 0.0  # spent in gradient diagnostics, outside Table 4's measured cost
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

    def encode_clips(self, model, clips: list) -> list[torch.Tensor]:
        """Vision features of decoded clips (processed by the training processor, one encoder run)."""
        vp = self.processing_class.video_processor
        batch = vp(videos=clips, video_metadata=video_metadata(clips, self.video_cfg["fps"]), return_tensors="pt")
        return self._encode(model, batch)

    @staticmethod
    def _encode(model, batch) -> list[torch.Tensor]:
        device = next(model.model.visual.parameters()).device
        return list(model.model.get_video_features(batch["pixel_values_videos"].to(device),
                                                   batch["video_grid_thw"].to(device)).pooler_output)

    def frame_shuffled_clips(self, reps: list[int]) -> list[np.ndarray]:
        """The representative rows' decoded clips with their frames reordered (`temporal_perturbation`, one draw per
        question group, in batch order): what the paper, Video-R1 and the authors' code shuffle."""
        if len(self._frames) != len(self._videos):
            raise RuntimeError(f"{len(self._frames)} decoded clips for {len(self._videos)} rows: temporal_unit 'frame' "
                               f"needs the generation batch's frames")
        out = []
        for r in reps:
            frames = self._frames[r]
            perm = temporal_permutation(len(frames), self._perm_rng, self.ktr.temporal_perturbation)
            out.append(np.asarray(frames)[perm.numpy()])
        return out

    def frame_shuffled_features(self, model, reps: list[int]) -> list[torch.Tensor]:
        return self.encode_clips(model, self.frame_shuffled_clips(reps))

    def donor_features(self, model, reps: list[int]) -> list[torch.Tensor]:
        """`other_clip` when the device batch holds a single question group (the paper's layout: one prompt x 8
        rollouts per device): the clip of another video of the training set, drawn with the step's perturbation
        seed, its frames picked uniformly and resized to this clip's grid (same frame count and patch grid, so the
        same number of video tokens), then encoded. One draw per question group."""
        dataset = self.train_dataset
        vp = self.processing_class.video_processor
        patch, tpatch = vp.patch_size, vp.temporal_patch_size
        clips = []
        for r in reps:
            own = self._batch_rows[r]["path"] if self._batch_rows else None
            start = int(torch.randint(len(dataset), (1,), generator=self._perm_rng))
            for step in range(len(dataset)):
                row = dataset[(start + step) % len(dataset)]
                if row["path"] != own:
                    break
            else:
                raise ValueError("visual_perturbation 'other_clip' needs a second video in the training set")
            t, h, w = self._videos[r]["video_grid_thw"][0].tolist()
            clips.append(clip_to_grid(load_frames(row, self.data_dir, self.video_cfg), t * tpatch, h * patch,
                                      w * patch))
        batch = vp(videos=clips, do_resize=False, return_tensors="pt")
        for r, grid in zip(reps, batch["video_grid_thw"]):
            if not torch.equal(grid, self._videos[r]["video_grid_thw"][0].cpu()):
                raise RuntimeError(f"donor clip grid {grid.tolist()} != {self._videos[r]['video_grid_thw'][0]}")
        return self._encode(model, batch)

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
                donors = None
                if cfg.visual_perturbation == "other_clip" and not other_clip_in_batch(feats):
                    donors = self.donor_features(model, reps)  # one question group here: a clip of the dataset
                variants.append((visual_perturbation(feats, cfg.visual_perturbation, self._perm_rng, 1, donors),
                                 rep_mask))
        if "T" in cfg.signals:
            if cfg.temporal_unit == "frame":  # decoded frames reordered, then encoded: one encoder run per group
                variants.append((self.frame_shuffled_features(model, reps), rep_mask))
            else:  # encoded 2-frame temporal patches reordered: no encoder run
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
            ent, shifts = completion_scores(model, predictive[0], list(predictive[1:]), cids, cfg, self.temperature)
        else:
            full, ent = tapped
            shifts = [logprob_shift(full, token_logprobs(model.lm_head, h, cids, self.temperature, cfg.chunk),
                                    cfg.signed) for h in predictive]
        scores = {"E": ent}
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

    # -- the loss ---------------------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        self._tap = None
        output = super()._generate_and_score_completions(inputs)
        valid = output["completion_mask"].bool()
        scores = self.attribution_scores(output)
        key, per_signal = self.select(scores, valid)
        mode = "train" if self.model.training else "eval"
        total = valid.sum().clamp(min=1)
        self._metrics[mode]["ktr/union_share"].append((key.sum() / total).item())
        for name, m in per_signal.items():
            self._metrics[mode][f"ktr/{name}_share"].append((m.sum() / total).item())
        if self.token_log_dir is not None and mode == "train":
            write_token_log(self.token_log_dir, run=self.args.run_name or "", step=self.state.global_step,
                            rank=self.accelerator.process_index, tokenizer=self.processing_class.tokenizer,
                            rows=inputs, output=output, scores=scores, per_signal=per_signal, key=key)
        return self.restrict_loss(output, scores, key)

    def restrict_loss(self, output: dict, scores: dict, key: torch.Tensor) -> dict:
        """The batch for TRL's loss, restricted to the key tokens (binary) or with soft-weighted advantages."""
        cfg = self.ktr
        if cfg.weighting != "binary":  # soft weights scale each token's advantage; every valid token stays in
            w = soft_weights({k: scores[k] for k in cfg.signals}, output["completion_mask"].bool(), cfg.ratio,
                             cfg.weighting)
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

    def _compute_loss(self, model, inputs):
        if self.diagnostics_every and model.training and "key_mask" in inputs and \
                self.state.global_step % self.diagnostics_every == 0:
            with unmetered(self):  # Table 4 measures the training step, as for the methods without diagnostics
                self.gradient_rows.append(gradients.diagnostics(self, model, inputs))
        return super()._compute_loss(model, inputs)
