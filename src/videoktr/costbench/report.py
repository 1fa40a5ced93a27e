"""The benchmark's report: per-step summaries, the KTR / GRPO ratios of each configuration, the report's JSON
document with its targets and the paper's numbers, and its figure (ratios over the sweeps, where the step time goes).

Which ratio means what is in docs/costbench.md; the report carries the same in its "method" entry.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from videoktr.costbench.trainers import METHODS

TARGETS = {"time_ratio": 1.05, "memory_ratio": 1.02}
PAPER = {"time_ratio": 1.106, "memory_ratio": 1.008}
# How each number of the report is measured, written into it as its "method" entry.
METHOD = {
    "time": "wall clock per optimizer step (on_step_begin..on_step_end), both methods in one process in "
            "lockstep (alternating steps, one running at a time, own RNG streams each), warm-up step "
            "excluded; time_ratio = mean KTR step / mean GRPO step; time_ratio_median = median over step "
            "pairs of KTR / GRPO; time_ratio_within_step = 1 / (1 - attribution_share), what the ratio is "
            "if the rest of a KTR step costs what a GRPO step costs (read within the same steps, so less "
            "exposed to the machine's load)",
    "precision": "bf16 autocast as TRL's GRPOConfig defaults only where the hardware has bf16 units; "
                 "otherwise fp32 (emulated bf16 would inflate the loss forward/backward, i.e. the GRPO "
                 "step, with a cost a GPU does not have)",
    "rewards": "the project's accuracy and format rewards plus a benchmark-only reward hashed from the "
               "completion text, so that advantages and gradients are not all zero with a random-init "
               "model",
    "attribution_share": "time inside KTRTrainer.attribution_scores / KTR step time (means)",
    "memory": "a fresh subprocess per (configuration, method), warm-up step + 1. memory_ratio = KTR / GRPO "
              "of memory_ratio_basis: on a CPU torch_peak_allocated_mib = parameters and buffers of policy "
              "and reference model + the peak of live torch CPU allocations during the steps (from the "
              "profiler's allocation/free events: the counterpart of torch.cuda.max_memory_allocated); "
              "memory_ratio_training = of that training peak alone; torch_peak_by_phase_mib = the highest "
              "live bytes inside each phase. RSS (VmHWM, reset after imports and before the first step) is "
              "kept as context; with the profiler on it also holds the profiler's buffers, so no RSS ratio "
              "is given then (memory_method 'rss' gives RSS ratios without the profiler)",
    "batches": "lr 0 and forced completion length: both trainers sample identical batches "
               "(batches_identical checks the hashes of every step's ids)",
}


def ratio(a: float, b: float) -> float:
    """a / b, NaN where b is not positive."""
    return a / b if b > 0 else float("nan")


def benchmark_report(results: list[dict], model_info: dict, settings: dict, wall_seconds: float) -> dict:
    """The report's JSON document: what was measured and how, every configuration, each target's worst ratio."""
    report = {
        "what": "Video-KTR step vs vanilla GRPO step, same initial weights, seeds and batches",
        "targets": TARGETS,
        "paper": {**PAPER, "note": "the paper's reported numbers (Video-KTR vs GRPO), not ours"},
        "model": model_info,
        "settings": settings,
        "method": dict(METHOD),
        "configurations": results,
        "wall_seconds": wall_seconds,
    }
    for key, target in TARGETS.items():
        values = [r[key] for r in results if key in r]
        report[f"{key}_max"] = max(values) if values else None
        report[f"{key}_meets_target"] = bool(values) and max(values) <= target
    return report


def summary(run: dict) -> dict:
    """Mean and median step time over the timed steps (the first step is the warm-up), mean phase times."""
    timed = run["steps"][1:]
    seconds = [s["seconds"] for s in timed]
    phases = defaultdict(float)
    for s in timed:
        for k, v in s["phases"].items():
            phases[k] += v / len(timed)
    return {"step_seconds_mean": statistics.fmean(seconds), "step_seconds_median": statistics.median(seconds),
            "step_seconds": seconds, "warmup_seconds": run["steps"][0]["seconds"],
            "phases_seconds_mean": dict(sorted(phases.items()))}


def configuration_entry(frames: int, length: int, runs: dict) -> dict:
    """One configuration's row: KTR / GRPO time ratios, attribution share, whether the batches were identical."""
    grpo, ktr = summary(runs["grpo"]), summary(runs["ktr"])
    attribution = ktr["phases_seconds_mean"].get("attribution", 0.0)
    fp = {m: [f["sha256"] for f in runs[m]["fingerprints"]] for m in METHODS}
    return {
        "frames": frames, "completion_length": length,
        "prompt_tokens_max": max(f["prompt_tokens"] for f in runs["grpo"]["fingerprints"]),
        "completion_tokens": sorted({t for f in runs["grpo"]["fingerprints"] for t in f["completion_tokens"]}),
        "time_ratio": ratio(ktr["step_seconds_mean"], grpo["step_seconds_mean"]),
        "time_ratio_median": statistics.median(ratio(k, g) for g, k in zip(grpo["step_seconds"], ktr["step_seconds"])),
        "attribution_share": ratio(attribution, ktr["step_seconds_mean"]),
        "time_ratio_within_step": ratio(ktr["step_seconds_mean"], ktr["step_seconds_mean"] - attribution),
        "attribution_seconds_mean": attribution,
        "batches_identical": fp["grpo"] == fp["ktr"],
        "grpo": grpo, "ktr": ktr, "torch_threads": runs["grpo"]["torch_threads"], "device": runs["grpo"]["device"],
        "gradient_checkpointing": runs["grpo"]["gradient_checkpointing"], "bf16_autocast": runs["grpo"]["bf16"],
    }


def memory_entry(mem: dict) -> dict:
    """The memory figures of both methods' fresh-process runs and their KTR / GRPO ratio on the best basis here."""
    keys = ("peak_rss_mib", "peak_above_imports_mib", "rss_after_imports_mib", "peak_loading_mib", "rss_ready_mib",
            "rss_train_start_mib", "peak_training_mib", "peak_training_above_start_mib", "peak_reset",
            "torch_static_mib", "torch_training_peak_mib", "torch_peak_allocated_mib", "torch_peak_by_phase_mib",
            "cuda_peak_allocated_mib", "high_water_raised_mib", "high_water_last_raised_in")
    out = {f"memory_{m}": {k: mem[m][k] for k in keys if k in mem[m]} for m in METHODS}
    if "cuda_peak_allocated_mib" in mem["grpo"]:
        basis = "cuda_peak_allocated_mib"
    elif "torch_peak_allocated_mib" in mem["grpo"]:
        basis = "torch_peak_allocated_mib"
        out["memory_ratio_training"] = ratio(mem["ktr"]["torch_training_peak_mib"],
                                             mem["grpo"]["torch_training_peak_mib"])
    else:
        basis = "peak_above_imports_mib"
    out.update(memory_ratio=ratio(mem["ktr"][basis], mem["grpo"][basis]), memory_ratio_basis=basis)
    if basis != "torch_peak_allocated_mib":  # with the profiler on, RSS also holds its event buffers
        out.update(
            memory_ratio_rss_training=ratio(mem["ktr"]["peak_training_above_start_mib"],
                                            mem["grpo"]["peak_training_above_start_mib"]),
            memory_ratio_whole_process=ratio(mem["ktr"]["peak_rss_mib"], mem["grpo"]["peak_rss_mib"]),
        )
    return out


def plot(report: dict, path) -> None:
    """Ratios over the frames and the length sweep (top), mean step time split into phases per method (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report["settings"]
    units = s.get("temporal_units") or [None]
    # the sweeps are of the first temporal unit; each other unit is one point at the first configuration
    rows = [r for r in report["configurations"] if r.get("temporal_unit") in (units[0], None)]
    others = [r for r in report["configurations"] if r not in rows]
    f0, l0 = s["frames_list"][0], s["completion_lengths"][0]
    sweeps = [("frames", "frames per clip", [r for r in rows if r["completion_length"] == l0],
               f"completion length {l0}"),
              ("completion_length", "completion length (tokens)", [r for r in rows if r["frames"] == f0],
               f"{f0} frames")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
    for col, (key, label, sweep, fixed) in enumerate(sweeps):
        sweep = sorted(sweep, key=lambda r: r[key])
        x = [r[key] for r in sweep]
        ax = axes[0][col]
        ax.plot(x, [r["time_ratio"] for r in sweep], "o-", color="C0", label="step time ratio (ours)")
        ax.plot(x, [r["time_ratio_within_step"] for r in sweep], "^--", color="C2",
                label="1 / (1 - attribution share) (ours)")
        if all("memory_ratio" in r for r in sweep):
            ax.plot(x, [r["memory_ratio"] for r in sweep], "s-", color="C1", label="peak memory ratio (ours)")
        ax.axhline(TARGETS["time_ratio"], color="C0", ls="--", lw=1, label=f"time target {TARGETS['time_ratio']}")
        ax.axhline(TARGETS["memory_ratio"], color="C1", ls="--", lw=1,
                   label=f"memory target {TARGETS['memory_ratio']}")
        ax.axhline(PAPER["time_ratio"], color="C0", ls=":", lw=1, label=f"paper time {PAPER['time_ratio']}")
        ax.axhline(PAPER["memory_ratio"], color="C1", ls=":", lw=1, label=f"paper memory {PAPER['memory_ratio']}")
        ax.axhline(1.0, color="grey", lw=0.5)
        for k, r in enumerate(others):  # the other temporal units, at the first frame count and length
            ax.plot([r[key]], [r["time_ratio"]], "D", color=f"C{4 + k}",
                    label=f"step time ratio, temporal unit {r['temporal_unit']}")
        ax.set_xlabel(label)
        ax.set_ylabel("Video-KTR / GRPO")
        ax.set_title(f"ratio vs {label}, at {fixed}")
        ax.set_xticks(x)
        ax.legend(fontsize=7)
        ax = axes[1][col]
        names = [n for n in ("generate", "prepare_prompts", "ref_logps", "attribution", "loss_forward", "backward",
                             "optimizer") if any(n in r["ktr"]["phases_seconds_mean"] for r in sweep)]
        width = 0.38
        pos = list(range(len(sweep)))
        for i, method in enumerate(METHODS):
            bottom = [0.0] * len(sweep)
            for j, name in enumerate(names):
                v = [r[method]["phases_seconds_mean"].get(name, 0.0) for r in sweep]
                ax.bar([p + (i - 0.5) * width for p in pos], v, width, bottom=bottom, color=f"C{j}",
                       edgecolor="black" if method == "ktr" else None, label=name if i == 1 else None)
                bottom = [b + w for b, w in zip(bottom, v)]
            for p, r in zip(pos, sweep):
                ax.bar(p + (i - 0.5) * width, r[method]["step_seconds_mean"] - bottom[pos.index(p)], width,
                       bottom=bottom[pos.index(p)], color="lightgrey", label="other" if i == 1 and p == 0 else None)
        ax.set_xticks(pos, [f"{v}\nGRPO | KTR" for v in x])
        ax.set_xlabel(label)
        ax.set_ylabel("mean step time (s)")
        ax.set_title("where the step time goes (left GRPO, right KTR)")
        ax.legend(fontsize=7)
    model = report["model"]
    fig.suptitle(f"Video-KTR attribution cost on {report['settings']['device']}: hidden {model['hidden_size']} x "
                 f"{model['layers']} layers, {report['settings']['timed_steps']} timed steps per method and point")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
