"""RL: one training run of GRPO, a baseline or Video-KTR.

`run` builds the trainer a config run names and trains it (resumable). `grpo` is TRL's GRPOTrainer carrying video
through generation, log-probs and loss; `ktr` adds key-token attribution, whose pure scores and selection live in
`attribution` and whose masked and shuffled forward passes live in `counterfactuals` (`logits`: the chunked
log-softmax they share); `baselines` holds T-GRPO and TW-GRPO; `rewards` are Video-R1's, on the answer rules of
`videoktr.eval.answers`; `token_log` and `gradients` record what KTR selected and how
the gradient splits; `cost_meter` measures Table 4's time, memory and FLOPs. Rules: workflow/rules/train.smk.
"""
