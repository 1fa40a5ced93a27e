"""Evaluation: a model's answers, scored.

The inference backends (`backends`: transformers generate, vLLM), the one copy of Video-R1's answer rules
(`answers`, shared with the RL rewards), each benchmark's protocol and loader (`protocols`, `benchmarks` and the
loader modules), the resumable evaluation of one model on one benchmark (`evaluate`), and the SFT model's difficulty
filter over the training questions (`filtering`). Rules: workflow/rules/filter.smk, eval.smk.
"""
