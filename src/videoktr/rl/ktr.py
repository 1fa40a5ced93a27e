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

from videoktr.config import ktr_knob_defaults
from videoktr.data.model_inputs import load_frames, mm_token_type_ids, video_metadata
from videoktr.rl import gradients
from videoktr.rl.attribution import (
    key_token_masks,
    logprob_shift,
    other_clip_in_batch,
    permute_slices,
    soft_weights,
    temporal_permutation,
    ties_at_threshold,
    union,
    visual_perturbation,
)
from videoktr.rl.cost_meter import CostMeter
from videoktr.rl.counterfactuals import (GenerationTap, clip_to_grid, completion_scores, gathered_valid_scores,
                                         global_batch_mask, prompt_groups)
from videoktr.rl.grpo import VideoGRPOTrainer, join_videos
from videoktr.rl.logits import gathered_head, token_logprobs
from videoktr.rl.token_log import write_token_log


KNOBS = {k: tuple(v) if isinstance(v, list) else v for k, v in ktr_knob_defaults().items()}


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
            with gathered_head(model.lm_head) as head:  # one weight gather for every chunk (ZeRO-3: ragged lengths)
                shifts = [logprob_shift(full, token_logprobs(head, h, cids, self.temperature, cfg.chunk),
                                        cfg.signed) for h in predictive]
        scores = {"E": ent}
        scores.update(zip([s for s in ("V", "T") if s in cfg.signals], shifts))
        return scores

    # -- selection --------------------------------------------------------------------------------------------
    def select(self, scores: dict, valid: torch.Tensor) -> tuple[torch.Tensor, dict]:
        cfg = self.ktr
        if cfg.scope == "batch":
            per_signal = {name: global_batch_mask(self.accelerator, scores[name], valid, cfg.ratio, cfg.no_spread)
                          for name in cfg.signals}
            return union(per_signal, valid), per_signal
        return key_token_masks({k: scores[k] for k in cfg.signals}, valid, cfg.ratio, self.scope_groups(valid),
                               cfg.signals, cfg.no_spread)

    def scope_groups(self, valid: torch.Tensor) -> torch.Tensor:
        """Each row's top-r scope (scope group or sequence): its group id."""
        rows = torch.arange(valid.size(0), device=valid.device)
        if self.ktr.scope == "sequence":
            return rows
        # the rollouts of one question (same prompt and clip) as the attribution found them in the batch
        return self._prompt_group if self._prompt_group is not None else rows // self.num_generations

    def threshold_ties(self, scores: dict, per_signal: dict, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per signal, its selected tokens tied at their scope's threshold (`ties_at_threshold`): picked by position
        (or, scope batch, taken with the whole tie), not by score. All of them on a signal with no spread."""
        if self.ktr.scope == "batch":
            return {name: ties_at_threshold(scores[name], m, valid, all_valid_scores=gathered_valid_scores(
                self.accelerator, scores[name], valid), ratio=self.ktr.ratio) for name, m in per_signal.items()}
        groups = self.scope_groups(valid)
        return {name: ties_at_threshold(scores[name], m, valid, groups) for name, m in per_signal.items()}

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
        ties = self.threshold_ties(scores, per_signal, valid)
        for name, m in per_signal.items():
            self._metrics[mode][f"ktr/{name}_share"].append((m.sum() / total).item())
            # share of the signal's selected tokens that a tie at the threshold picked, not their score
            self._metrics[mode][f"ktr/ties_{name}"].append((ties[name].sum() / m.sum().clamp(min=1)).item())
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
