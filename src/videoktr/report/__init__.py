"""Report: tables, figures and word analyses from what the DAG produced.

`grid` says which runs and evaluations each table or figure needs (config `tables`); `summaries` reads what they
need; `tables` writes Tables 1-5 with the paper's numbers beside ours (`cells`, `cost_table`, `released_table`,
`table_output`), every accuracy with its bootstrap interval (`uncertainty`); the figure modules draw the paper's figures; `words` aligns BPE tokens to words and
tags them; `semantics` asks whether visual and temporal scores pick appearance and motion words; `training` whether
each RL run's reward rose and where its rollouts part from GRPO's.
Rules: workflow/rules/report.smk, figures.smk, analysis.smk.
"""
