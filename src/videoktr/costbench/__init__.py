"""Cost benchmark: a Video-KTR step against a GRPO step on identical batches, side by side in one process.

Times and peak memory over frame counts and completion lengths, written to a JSON report and a plot (never a timed
test). Rule: workflow/rules/bench.smk; method notes in docs/costbench.md.
"""
