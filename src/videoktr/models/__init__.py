"""Models: the SFT model that RL starts from.

The tiny but real Qwen2.5-VL of the embedded world, with its own byte-level BPE tokenizer (`tiny`), and its
supervised fine-tuning on chain-of-thought targets (`sft`). On the paper path the SFT checkpoint is downloaded
instead (`videoktr.data.hub`). Rules: workflow/rules/sft.smk.
"""
