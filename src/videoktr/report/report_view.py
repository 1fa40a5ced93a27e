"""What `snakemake --report` shows of each result: its category (the paper's parts, in its order; the report's menu
sorts categories by name, hence the numbers in front) and, in its sidebar, its job's params (`ReportParam`).
"""

from __future__ import annotations

import json

CATEGORIES: dict[str, list[str]] = {
    "1 Main results": ["headline", "table1", "table3", "table5", "fig3a", "fig3b"],
    "2 Ablations": ["table2", "fig7", "fig8", "fig9", "fig10"],
    "3 Analyses": ["fig2", "fig4", "fig5", "fig6", "fig11", "fig12", "curves"],
    "4 Cost": ["table4"],
    "5 Released checkpoints": ["table1_released"],
}
CATEGORY_OF = {name: category for category, names in CATEGORIES.items() for name in names}


def category(name: str) -> str:
    """The report category of a table or figure (KeyError for one not placed: every result has its place)."""
    return CATEGORY_OF[name]


class ReportParam(str):
    """A config JSON as a param of a rule whose output is in the report. Whole where it counts: in the command
    (`{params.cfg:jsonq}`) and in Snakemake's rerun trigger on params (which stores repr()); in the report's sidebar,
    which prints params with format(value, ""), only the names of its sections, not pages of JSON. Give it from a
    function (`cfg=lambda w: ...`): Snakemake re-makes a plain string param as a str."""

    def __format__(self, spec):
        if spec == "json":
            return str(self)
        return "<config sections " + ", ".join(json.loads(self)) + ">"
