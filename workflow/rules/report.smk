# Tables: each one pulls exactly the evaluations it shows.


rule table1:
    input:
        expand(
            f"{OUT}/eval/{{model}}/{{benchmark}}/f{{frames}}.summary.json",
            model=config["eval"]["models"],
            benchmark=config["eval"]["benchmarks"],
            frames=config["eval"]["frames"],
        ),
    output:
        csv=f"{OUT}/tables/table1.csv",
        md=f"{OUT}/tables/table1.md",
    conda:
        "../../envs/analysis.yaml"
    log:
        f"{OUT}/logs/table1.log",
    shell:
        "videoktr table1 --summaries {input} --csv {output.csv} --md {output.md} > {log} 2>&1"
