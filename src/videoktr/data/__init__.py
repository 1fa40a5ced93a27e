"""Data: everything before a model sees a question.

The tiny world's generated clips and questions (`world`), downloads from the Hugging Face hub at pinned revisions
(`hub`), the checks that turn raw records into clean splits (`records`), video decoding (`video`), Video-R1's prompts
(`prompts`), the frames and processor inputs a model reads (`model_inputs`), and a local hub in the published layouts for
rehearsing the paper path offline (`rehearsal_mirror`, `mirror_checkpoints`). Rules: workflow/rules/data.smk.
"""
