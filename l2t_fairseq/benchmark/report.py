"""The benchmark's tables: means over seeds, the test over training runs and the paired bootstrap against
cross-entropy, cost ratios.  Two rows' runs of a seed are compared, paired, only where they ran on kernels of the same
identity (``kernels.kernel_identity``: the kernel fingerprint); a seed where they did not is named unpaired, and no
gap, cost ratio or significance is drawn from it."""

import os
import statistics

from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from l2t_fairseq.benchmark import over_seeds
from l2t_fairseq.benchmark.kernels import kernel_identity
from l2t_fairseq.benchmark.presets import BASELINE, DATA_ROWS, EQUAL_TIME, FILTERED, FIXED, TEACHER_ROWS
from l2t_fairseq.benchmark.test_set import HYPOTHESES, read_lines, row_test_side
from l2t_fairseq.noise import copy_share

TEST_BLEU = BLEU(tokenize="none", force=True)  # the text is fairseq's tokenized, de-BPE'd output: tokenized BLEU4
# (force: sacrebleu would warn that it looks tokenized, which it is meant to be)
# sacrebleu's paired bootstrap: with 10,000 resamples a p-value near 0.05 moves by about 0.002 with the resampling's
# seed (sacrebleu's SACREBLEU_SEED, default 12345), where with 1,000 it moved across 0.05
BOOTSTRAP_SAMPLES = 10_000
SIGNIFICANCE = 0.05
COPIED = 0.5  # an output that shares more than this of its tokens with its source copies it
MIN_SEEDS = over_seeds.MIN_SEEDS  # paired seeds a verdict needs: with fewer it stays open
# the rows a teacher row must beat, besides cross-entropy by more than its seed spread
RIVAL = "label_smoothed"  # the cheap alternative a teacher row must beat too
FILTER_CHECK = "above the overlap filter whose threshold dev BLEU chose"
CE_CHECK = "ahead of cross-entropy over training runs"
FIXED_CHECK = "ahead of the loss at its initial coefficients over training runs"
RIVALS = {"label_smoothed": "ahead of label smoothing over training runs",
          "cross_entropy_equal_time": "above cross-entropy given the same time"}


def bootstrap_settings():
    return {"resamples": BOOTSTRAP_SAMPLES, "seed": os.environ.get("SACREBLEU_SEED", "12345")}


def paired_bootstrap(records, baseline, row, seed):
    """sacrebleu's paired bootstrap p-value of ``row`` against ``baseline`` on the same seed's test set."""
    references = read_lines(os.path.join(records, "reference.txt"))
    systems = [(name, read_lines(os.path.join(records, f"{name}-seed{seed}{HYPOTHESES}"))) for name in (baseline, row)]
    _, scores = PairedTest(systems, {"BLEU": TEST_BLEU}, [references], test_type="bs", n_samples=BOOTSTRAP_SAMPLES)()
    return scores["BLEU"][1].p_value


def copy_rates(records, row, seeds):
    """Per seed, the share of the test outputs that copy their source (more than ``COPIED`` of their tokens found in
    it: the untranslated rate); [] where the records keep no sources."""
    sources = row_test_side(records, "source.txt", row)
    if not os.path.isfile(sources):
        return []
    sources = read_lines(sources)
    rates = []
    for seed in seeds:
        outputs = read_lines(os.path.join(records, f"{row}-seed{seed}{HYPOTHESES}"))
        rates.append(sum(copy_share(s, o) > COPIED for s, o in zip(sources, outputs)) / len(outputs))
    return rates


def paired_seeds(runs, row, other):
    """The seeds where ``row`` and ``other`` both ran on kernels of one identity."""
    return [seed for seed in both_ran(runs, row, other)
            if kernel_identity(runs[str(seed)][row]) == kernel_identity(runs[str(seed)][other])]


def unpaired_seeds(runs, row, other):
    """The seeds where ``row`` and ``other`` both ran, on kernels of different identities: not compared."""
    paired = paired_seeds(runs, row, other)
    return [seed for seed in both_ran(runs, row, other) if seed not in paired]


def both_ran(runs, row, other):
    return [int(seed) for seed, by_row in runs.items() if row in by_row and other in by_row]


def seeds_test(runs, row, other, seeds):
    """The test over training runs (``over_seeds.compare``) of ``row`` against ``other`` on ``seeds`` (paired)."""
    return over_seeds.compare([runs[str(seed)][row]["test_bleu"] for seed in seeds],
                              [runs[str(seed)][other]["test_bleu"] for seed in seeds])


def against(runs, row, other):
    """``row`` against ``other`` directly: the seeds paired, the mean gap over them, the test over training runs,
    the seeds not compared."""
    seeds = paired_seeds(runs, row, other)
    return {"seeds": seeds, "gap": mean_gap(runs, row, other), "over_seeds": seeds_test(runs, row, other, seeds),
            "unpaired_seeds": unpaired_seeds(runs, row, other)}


def spread(values):
    """The standard deviation over seeds (0 for one seed)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def convergence(curves, tail=0.2):
    """For each budget B (an update every curve validated at): the mean over the curves (seeds) of what the
    best-so-far dev BLEU gained over the last ``tail`` of B, from update (1 - tail) B to B."""
    def best(curve, upto):
        return max((bleu for update, bleu in curve if update <= upto), default=0.0)

    budgets = sorted(set.intersection(*({update for update, _ in curve} for curve in curves)))
    return [(b, statistics.mean(best(c, b) - best(c, (1 - tail) * b) for c in curves)) for b in budgets]


def converged_budget(curves, tolerance=0.3, tail=0.2):
    """The smallest budget from which on the best-so-far dev BLEU gains less than ``tolerance`` over the last
    ``tail`` of every budget measured (a plateau early in training that later ends is no convergence), and
    measured over at least ``tail`` more of the run (a dip at the last validations proves nothing); else None."""
    gains = convergence(curves, tail)
    budget = None
    for b, gain in gains:
        budget = None if gain >= tolerance else budget or b
    return budget if budget is not None and budget <= (1 - tail) * gains[-1][0] else None


def summarize(runs, rows, records):
    """Per row: mean and std over seeds, paired-bootstrap p-values against CE, and cost ratios to CE."""
    summary = {}
    for row in rows:
        seeds = [seed for seed, by_row in runs.items() if row in by_row]
        values = {key: [runs[s][row].get(key) for s in seeds] for key in
                  ("test_bleu", "best_dev_bleu", "train_seconds", "cpu_seconds", "seconds_per_update", "peak_rss_mib",
                   "updates")}
        summary[row] = {
            key: [statistics.mean(v), spread(v)] for key, v in values.items()
            if all(x is not None for x in v)
        }
        summary[row]["seeds"] = [int(s) for s in seeds]
        copies = copy_rates(records, row, seeds)
        if copies:
            summary[row]["copy_rate"] = [statistics.mean(copies), spread(copies)]
            summary[row]["copy_rate_per_seed"] = copies
            split = over_seeds.bimodal(copies, values["test_bleu"])
            if split:
                summary[row]["bimodal_copying_seeds"] = [int(seeds[i]) for i in split]
    if BASELINE not in summary:
        return summary
    base = summary[BASELINE]
    for row in rows:
        s = summary[row]
        paired = paired_seeds(runs, row, BASELINE)
        # on the seeds both rows have on kernels of one identity, like the gap: a seed of one row alone, or its
        # run of the other row, may have run on another machine
        for key in ("train_seconds", "cpu_seconds", "seconds_per_update", "peak_rss_mib"):
            if key in s and key in base and paired:
                s[f"{key}_ratio"] = cost_ratio(runs, row, paired, key)
        if row == BASELINE:
            continue
        s["paired_bootstrap_p"] = [paired_bootstrap(records, BASELINE, row, seed) for seed in paired]
        s["paired_seeds"] = paired
        s["unpaired_seeds"] = unpaired_seeds(runs, row, BASELINE)
        s["over_seeds"] = seeds_test(runs, row, BASELINE, paired)
        s["fraction_p_below_0.05"] = (sum(p < SIGNIFICANCE for p in s["paired_bootstrap_p"]) / len(paired)
                                      if paired else None)
        s["gap_per_seed"] = [runs[str(seed)][row]["test_bleu"] - runs[str(seed)][BASELINE]["test_bleu"]
                             for seed in paired]
        # on the seeds both rows have: a row that has finished fewer seeds is not compared with others
        s["gap_to_ce"] = statistics.mean(s["gap_per_seed"]) if paired else None
        s["gap_in_ce_std"] = s["gap_to_ce"] / base["test_bleu"][1] if paired and base["test_bleu"][1] > 0 else None
    for equal_time, row in EQUAL_TIME.items():
        if row in summary and equal_time in summary:
            summary[row]["gap_to_equal_time"] = mean_gap(runs, row, equal_time)
    if FIXED in summary:  # what learning the coefficients adds: each teacher row against the loss it starts from
        for row in (r for r in TEACHER_ROWS if r in summary):
            summary[row]["vs_fixed"] = against(runs, row, FIXED)
    if RIVAL in summary:  # label smoothing tested against each teacher row directly, not through cross-entropy
        for row in (r for r in TEACHER_ROWS if r in summary):
            direct = against(runs, row, RIVAL)
            seeds = direct["seeds"]
            summary[row]["vs_label_smoothed"] = {
                **direct,
                "paired_bootstrap_p": [paired_bootstrap(records, RIVAL, row, seed) for seed in seeds],
                "gap_per_seed": [runs[str(seed)][row]["test_bleu"] - runs[str(seed)][RIVAL]["test_bleu"]
                                 for seed in seeds],
            }
    return summary


def pairing_summary(runs):
    """Across the rows of each seed: do their students start from the same weights and the same first batches
    (records with ``pairing`` facts; not the rows on data of their own, whose vocabularies and batches differ by
    construction), and which runs were resumed after their first epoch (from there fairseq drew
    their batches anew)."""
    seeds, resumed, probed = {}, [], 0
    own_data = sorted({row for by_row in runs.values() for row in by_row if row in DATA_ROWS})
    for seed, by_row in sorted(runs.items()):
        facts = {row: r["pairing"] for row, r in by_row.items()
                 if (r.get("pairing") or {}).get("initial_weights_sha256") and row not in DATA_ROWS}
        probed += len(facts)
        seeds[seed] = {"rows": len(facts),
                       "same_weights": len({f["initial_weights_sha256"] for f in facts.values()}) <= 1,
                       "same_first_batches": len({f["first_batches_sha256"] for f in facts.values()}) <= 1}
        resumed += [f"{row} seed {seed} at {f['same_batches_until']}" for row, f in facts.items()
                    if f.get("same_batches_until") is not None]
    return {"seeds": seeds, "probed_runs": probed, "resumed_later": resumed, "own_data": own_data}


def cost_ratio(runs, row, seeds, key):
    """``row``'s mean ``key`` (a cost) over ``seeds`` divided by cross-entropy's over the same seeds."""
    def mean(name):
        return statistics.mean(runs[str(seed)][name][key] for seed in seeds)
    return mean(row) / mean(BASELINE)


def mean_gap(runs, row, other):
    """The mean test BLEU of ``row`` minus ``other``'s over the seeds both have on kernels of one identity; None if
    they share none."""
    gaps = [runs[str(seed)][row]["test_bleu"] - runs[str(seed)][other]["test_bleu"]
            for seed in paired_seeds(runs, row, other)]
    return statistics.mean(gaps) if gaps else None


def significant_seeds(s):
    """How many of a row's paired seeds are significantly (p < ``SIGNIFICANCE``) ahead of cross-entropy, and how
    many significantly behind it."""
    gaps = [gap for p, gap in zip(s.get("paired_bootstrap_p", []), s.get("gap_per_seed", [])) if p < SIGNIFICANCE]
    return sum(gap > 0 for gap in gaps), sum(gap < 0 for gap in gaps)


def filter_choice(runs):
    """The overlap-filter rows' mean best dev BLEU over the seeds every one of them has run, and the row whose
    threshold it chose; {} where no seed has them all."""
    rows = [row for row in FILTERED if any(row in by_row for by_row in runs.values())]
    seeds = sorted((seed for seed, by_row in runs.items() if rows and all(row in by_row for row in rows)), key=int)
    if not seeds:
        return {}
    dev = {row: statistics.mean(runs[seed][row]["best_dev_bleu"] for seed in seeds) for row in rows}
    return {"seeds": seeds, "dev": dev, "chosen": max(rows, key=dev.get)}


def over_seeds_check(test):
    """A check from a test over training runs: True where the row is ahead, False where it is behind or stays
    undecided on as many seeds as are asked for, None where it is undecided and more seeds are asked for (or the
    other row was not run)."""
    if test is None or test["more_seeds"]:
        return None
    return test["outcome"] == "ahead"


def verdict(summary, runs):
    """For each teacher row, the rule a gain must pass: ahead of cross-entropy over training runs, ahead of the
    loss at its initial coefficients (``l2t_dlf_fixed``: what learning them adds) and ahead of label smoothing over
    training runs (``over_seeds``: Almost Stochastic Order over the paired seeds); above
    cross-entropy given the same time; on noisy data, above the overlap filter dev BLEU chose.  Each check is True,
    False or None (not yet measured: a missing row, or more seeds asked for); ``gain`` is False if any check fails,
    True if all pass, else None.  A row on fewer than ``MIN_SEEDS`` seeds paired with cross-entropy has every check
    None: too few to decide.  The paired bootstrap's wins per seed are reported beside it, not used by it: they
    measure the test set's sampling, not the spread between training runs."""
    if BASELINE not in summary:
        return {}
    chosen = filter_choice(runs).get("chosen")
    verdicts = {}
    for row in (r for r in TEACHER_ROWS if r in summary):
        s = summary[row]
        wins, _ = significant_seeds(s)
        margins = {"cross_entropy": s["gap_to_ce"], **{rival: mean_gap(runs, row, rival) for rival in RIVALS}}
        margins[FIXED] = mean_gap(runs, row, FIXED)
        tests = {BASELINE: s.get("over_seeds"), RIVAL: s.get("vs_label_smoothed", {}).get("over_seeds"),
                 FIXED: s.get("vs_fixed", {}).get("over_seeds")}
        checks = {
            CE_CHECK: over_seeds_check(tests[BASELINE]),
            FIXED_CHECK: over_seeds_check(tests[FIXED]),
            RIVALS[RIVAL]: over_seeds_check(tests[RIVAL]),
            RIVALS["cross_entropy_equal_time"]: None if margins["cross_entropy_equal_time"] is None
            else margins["cross_entropy_equal_time"] > 0,
        }
        if chosen:  # a noisy-data benchmark: the filter a practitioner would try first is a bar too
            margins["filter"] = mean_gap(runs, row, chosen)
            checks[FILTER_CHECK] = None if margins["filter"] is None else margins["filter"] > 0
        if len(s["paired_seeds"]) < MIN_SEEDS:
            checks = dict.fromkeys(checks)
        outcomes = set(checks.values())
        verdicts[row] = {"gain": False if False in outcomes else (True if outcomes == {True} else None),
                         "checks": checks, "margins": margins, "over_seeds": tests,
                         "significant_wins": wins, "seeds": len(s["paired_seeds"]),
                         "unpaired_seeds": s.get("unpaired_seeds", [])}
    return verdicts


def verdict_lines(verdicts):
    def margin(value):
        return "not run" if value is None else f"{value:+.2f}"

    def tested(test):
        return "not run" if test is None else over_seeds.describe(test)

    lines = ["", "Verdict, per teacher row (a gain passes every check; margins are mean test BLEU over the seeds "
             "both rows have on kernels of one fingerprint; over training runs: Almost Stochastic Order, "
             f"ahead where eps_min < {over_seeds.ASO_THRESHOLD}):", ""]
    for row, v in verdicts.items():
        word = {True: "a gain", False: "no gain", None: "open"}[v["gain"]]
        failed = [name for name, ok in v["checks"].items() if ok is False]
        unmeasured = [name for name, ok in v["checks"].items() if ok is None]
        if v["seeds"] < MIN_SEEDS:
            unmeasured = [f"every check (paired with cross-entropy on {v['seeds']} of the {MIN_SEEDS} seeds it needs)"]
        against = [(BASELINE, "cross-entropy"), (FIXED, "its initial coefficients"), (RIVAL, "label smoothing")]
        lines.append(
            f"- {row}: **{word}**. "
            + "; ".join(f"vs {name} not compared (not run, or on other kernels)" if v["margins"][key] is None
                        else f"vs {name} {margin(v['margins'][key])}, {tested(v['over_seeds'][key])}"
                        for key, name in against)
            + f"; vs equal time {margin(v['margins']['cross_entropy_equal_time'])}"
            + (f"; vs the filter {margin(v['margins']['filter'])}" if "filter" in v["margins"] else "")
            + f". The paired bootstrap (over test sentences) finds it significantly ahead on {v['significant_wins']} "
            f"of {v['seeds']} seeds." + (f" Fails: {'; '.join(failed)}." if failed else "")
            + (f" Not yet measured: {'; '.join(unmeasured)}." if unmeasured else "")
            + (f" Unpaired with cross-entropy (other kernels, not compared): seed(s) "
               f"{', '.join(map(str, v['unpaired_seeds']))}." if v["unpaired_seeds"] else "")
        )
    return lines


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
