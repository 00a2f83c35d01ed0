"""The verdict on each teacher row: the checks a gain must pass, from the benchmark's tables (``report``)."""

import statistics

from l2t_fairseq.benchmark import over_seeds
from l2t_fairseq.benchmark.presets import BASELINE, FILTERED, FIXED, TEACHER_ROWS
from l2t_fairseq.benchmark.report import MIN_SEEDS, RIVAL, mean_gap, significant_seeds

FILTER_CHECK = "above the overlap filter whose threshold dev BLEU chose"
CE_CHECK = "ahead of cross-entropy over training runs"
FIXED_CHECK = "ahead of the loss at its initial coefficients over training runs"
# the rows a teacher row must beat, besides cross-entropy
RIVALS = {"label_smoothed": "ahead of label smoothing over training runs",
          "cross_entropy_equal_time": "above cross-entropy given the same time"}


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

