"""``results.md``: the benchmark's tables, the test over training runs, each run, pairing and the verdict, as
markdown."""

from l2t_fairseq.benchmark import over_seeds
from l2t_fairseq.benchmark.kernels import kernel_identity
from l2t_fairseq.benchmark.report import COPIED, significant_seeds
from l2t_fairseq.benchmark.verdict import verdict_lines


def run_lines(summary, runs):
    """A row per run: its test BLEU with beam 5 (its result) and greedy, the share of its outputs that copy their
    source, and its kernel identity."""
    lines = ["", "Each run: test BLEU with beam 5 (the result above) and greedy (as dev BLEU is measured), the test "
             "outputs that copy their source, and the kernels it ran on (the fingerprint, or, for a record made "
             "before fingerprints, the processor, its instruction set and torch):", "",
             "| row | seed | test BLEU beam 5 | greedy | copies | kernels |", "|---|---|---|---|---|---|"]
    for row, s in summary.items():
        copies = dict(zip(s["seeds"], s.get("copy_rate_per_seed", [])))
        for seed in s["seeds"]:
            r = runs[str(seed)][row]
            greedy = r.get("test_bleu_greedy")
            lines.append(f"| {row} | {seed} | {r['test_bleu']:.2f} | {'-' if greedy is None else f'{greedy:.2f}'} "
                         f"| {f'{copies[seed]:.1%}' if seed in copies else '-'} | {kernel_identity(r)} |")
    return lines


def over_seeds_lines(summary):
    """The test over training runs of each row against cross-entropy, the unpaired seeds, the bimodal rows."""
    lines = ["", "Over training runs (each row against cross-entropy on the seeds both ran on kernels of one "
             f"fingerprint; Almost Stochastic Order, deepsig, 95 % confidence, eps_min the largest over ASO seeds "
             f"{', '.join(map(str, over_seeds.ASO_SEEDS))}; ahead or behind where eps_min < "
             f"{over_seeds.ASO_THRESHOLD}):", ""]
    for row, s in summary.items():
        if s.get("over_seeds"):
            unpaired = s.get("unpaired_seeds")
            lines.append(f"- {row}: {over_seeds.describe(s['over_seeds'])}"
                         + (f"; unpaired, not compared: seed(s) {', '.join(map(str, unpaired))}" if unpaired else "")
                         + ".")
    for row, s in summary.items():
        if s.get("bimodal_copying_seeds"):
            lines.append(f"- {row} is bimodal: seed(s) {', '.join(map(str, s['bimodal_copying_seeds']))} copy their "
                         f"source far more often (by over {over_seeds.COPY_GAP:.0%} of the test outputs) and score "
                         "lower than the others; its mean hides two kinds of run.")
    return lines if len(lines) > 3 else []


def markdown(summary, meta, runs=None):
    lines = [
        f"Tables written {meta['date']} from the records of runs on {meta['machine']}; "
        f"command: `{meta['command']}`; data: `{meta['data']}`; "
        f"seeds {meta['seeds']}; {meta['max_update']} updates per run; {meta['finished_runs']} "
        + ("" if meta["planned_runs"] is None else f"of {meta['planned_runs']} ") + "runs finished.",
        "",
        "| row | seeds | test BLEU (mean ± std) | gap to CE | in CE std | paired bootstrap p (per seed) "
        "| p < 0.05 ahead / behind | best dev BLEU | updates | train s | x CE | CPU s x CE | peak RSS MiB | x CE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def number(value, digits=2, signed=False):
        return "n/a" if value is None else f"{value:{'+' if signed else ''}.{digits}f}"

    for row, s in summary.items():
        p_values = ", ".join(f"{p:.3f}" for p in s.get("paired_bootstrap_p", [])) or "-"
        ahead_behind = " / ".join(map(str, significant_seeds(s))) if s.get("paired_seeds") else "-"
        lines.append(
            f"| {row} | {len(s['seeds'])} | {s['test_bleu'][0]:.2f} ± {s['test_bleu'][1]:.2f} "
            f"| {number(s.get('gap_to_ce'))} | {number(s.get('gap_in_ce_std'))} | {p_values} "
            f"| {ahead_behind} "
            f"| {number(s.get('best_dev_bleu', [None])[0])} | {s['updates'][0]:.0f} | {s['train_seconds'][0]:.0f} "
            f"| {number(s.get('train_seconds_ratio'))} | {number(s.get('cpu_seconds_ratio'))} "
            f"| {s['peak_rss_mib'][0]:.0f} | {number(s.get('peak_rss_mib_ratio'))} |"
        )
    lines += over_seeds_lines(summary)
    if runs:
        lines += run_lines(summary, runs)
    against = [f"{row} {number(s['gap_to_equal_time'], signed=True)}" for row, s in summary.items()
               if s.get("gap_to_equal_time") is not None]
    if against:
        lines += ["", "Against cross-entropy given the same CPU time (`cross_entropy_equal_time` for l2t_dlf, "
                  "`cross_entropy_equal_time_ROW` for the others; mean test BLEU over the seeds both have): "
                  + ", ".join(against) + "."]
    direct = [f"{row} {number(s['vs_label_smoothed']['gap'], signed=True)} (p "
              + ", ".join(f"{p:.3f}" for p in s["vs_label_smoothed"]["paired_bootstrap_p"]) + "; "
              + "significantly ahead / behind on {} / {} of {} seeds)".format(
                  *significant_seeds({"paired_bootstrap_p": s["vs_label_smoothed"]["paired_bootstrap_p"],
                                      "gap_per_seed": s["vs_label_smoothed"]["gap_per_seed"]}),
                  len(s["vs_label_smoothed"]["seeds"]))
              for row, s in summary.items() if s.get("vs_label_smoothed", {}).get("seeds")]
    if direct:
        lines += ["", "Each teacher row against label smoothing of the same seed (paired bootstrap; mean test BLEU "
                  "gap over the seeds both have): " + "; ".join(direct) + "."]
    copied = [f"{row} {s['copy_rate'][0]:.1%}" for row, s in summary.items() if "copy_rate" in s]
    if copied:
        lines += ["", f"Test outputs that copy their source (more than {COPIED:.0%} of their tokens found in it), "
                  "mean over seeds: " + ", ".join(copied) + "."]
    if meta.get("pairing", {}).get("probed_runs"):
        p, seeds = meta["pairing"], meta["pairing"]["seeds"]
        paired = [seed for seed, v in seeds.items() if v["rows"] > 1]
        same = [seed for seed in paired if seeds[seed]["same_weights"] and seeds[seed]["same_first_batches"]]
        unpaired = [seed for seed in paired if seed not in same]
        lines += ["", f"Pairing (the records' `pairing`, {p['probed_runs']} runs probed): the rows of seed(s) "
                  f"{', '.join(same) or 'none'} start from the same weights and the same first batches"
                  + (f" (left out, on data of their own: {', '.join(p['own_data'])})" if p.get("own_data") else "")
                  + (f"; not those of seed(s) {', '.join(unpaired)}" if unpaired else "")
                  + f". {len(p['resumed_later'])} of the runs were resumed after their first epoch, from where "
                  "fairseq drew their batches anew: " + (", ".join(p["resumed_later"]) or "none") + "."]
    choice = meta.get("filter_choice")
    if choice:
        dev = ", ".join(f"{row} {bleu:.2f}" for row, bleu in choice["dev"].items())
        lines += ["", f"The overlap filter, its threshold chosen on dev (mean best dev BLEU over seed(s) "
                  f"{', '.join(choice['seeds'])}, those every threshold has: {dev}): {choice['chosen']}. "
                  "cross_entropy_clean, trained on the clean data, is the ceiling, not a competitor."]
    if meta.get("bootstrap"):
        lines += ["", f"Paired bootstrap: sacrebleu's, {meta['bootstrap']['resamples']:,} resamples, seed "
                  f"{meta['bootstrap']['seed']}."]
    if "teacher_training" in meta:
        t = meta["teacher_training"]
        payback, dev = t.get("payback_students"), ", ".join(number(b) for b in t["best_dev_bleu"])
        lines += ["", f"l2t_dlf_trained's teacher: trained across {t['students']} students (seeds "
                  f"{', '.join(map(str, t['seeds']))}; best dev BLEU {dev}) "
                  f"in {t['cpu_seconds']:.0f} CPU s ({number(t.get('in_ce_runs'))} cross-entropy runs), not in the "
                  "row's own cost; it has paid for itself against l2t_dlf after "
                  + (f"{payback:.1f} taught students." if payback else "no number of students (it saves none).")]
    if meta.get("verdict"):
        lines += verdict_lines(meta["verdict"])
    return "\n".join(lines) + "\n"

