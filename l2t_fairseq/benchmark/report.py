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
from l2t_fairseq.benchmark.presets import BASELINE, DATA_ROWS, EQUAL_TIME, FIXED, TEACHER_ROWS
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
RIVAL = "label_smoothed"  # the cheap alternative a teacher row must beat too


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
