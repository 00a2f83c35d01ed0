"""Significance over training runs: is a row ahead of another across seeds, not only on one test set.

sacrebleu's paired bootstrap answers "is this checkpoint better than that one
on this test set"; it says nothing of how the gap varies from one training run
to the next, which on noisy data is by far the larger variance.  Two tests over
the seeds answer that, each on the runs of both rows that share a seed and a
kernel fingerprint:

- **Almost Stochastic Order** (Dror et al. 2019, deepsig's ``aso``): ``eps_min``,
  an upper bound (95 % confidence) on how far the row's distribution of test BLEU
  over training runs is from stochastically dominating the other's.  Below
  ``ASO_THRESHOLD`` (0.2, deepsig's recommendation) the row is *ahead*; the same
  test the other way round below it, *behind*; else *undecided*, and more seeds
  are asked for.  On fewer than ``MIN_SEEDS`` paired seeds ASO is not run (a
  distribution of two runs is none) and more seeds are asked for.  ASO
  resamples: it is computed under each of ``ASO_SEEDS`` and the largest
  ``eps_min`` is the one used (the range is reported, so that a decision that
  moves with ASO's own seed shows).  The verdict
  uses it.
- **a paired t-test over seeds** (scipy's ``ttest_1samp`` on the gaps, one-sided): the per-seed
  gaps' mean against their spread; reported beside ASO, not used by the verdict.

A row whose runs split by how much they copy their source (``bimodal``) is
named: its mean hides two kinds of run.
"""

import functools
import statistics
import warnings

ASO_THRESHOLD = 0.2
ASO_SEEDS = (1, 2)
ASO_ITERATIONS = 1000  # deepsig's default; a call takes 5-20 seconds here, hence two ASO seeds and the cache
MIN_SEEDS = 3  # paired seeds a decision needs: on fewer, more are asked for whatever the test says
MORE_SEEDS = 5  # the seeds asked for where the test over seeds is undecided
COPY_GAP = 0.15  # a gap in copy rate between two groups of a row's runs wider than this splits the row in two


@functools.lru_cache(maxsize=None)  # the report is rewritten after every finished run, from mostly the same runs
def aso_eps(scores_a, scores_b, iterations):
    """ASO's ``eps_min`` of A over B (tuples of scores) with ``iterations`` bootstrap iterations under each of
    ``ASO_SEEDS``: (largest, smallest)."""
    from deepsig import aso

    with warnings.catch_warnings():  # deepsig warns about few scores; the report says how many there are
        warnings.simplefilter("ignore")
        values = [float(aso(scores_a, scores_b, num_bootstrap_iterations=iterations, show_progress=False,
                            seed=seed)) for seed in ASO_SEEDS]
    return max(values), min(values)


def paired_t(gaps):
    """The one-sided paired t-test that the mean gap is above 0: (t, p); (None, None) under two seeds or where
    the gaps do not vary."""
    from scipy.stats import ttest_1samp

    if len(gaps) < 2 or statistics.pstdev(gaps) < 1e-9:  # equal gaps, but for rounding
        return None, None
    result = ttest_1samp(gaps, 0.0, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def compare(row_scores, base_scores):
    """The test over seeds of a row's test BLEU (``row_scores``) against another row's (``base_scores``), runs
    paired by seed (the same order).  ``outcome``: ``ahead``, ``behind`` or ``undecided``."""
    if len(row_scores) != len(base_scores):
        raise ValueError("the two rows' runs must be paired, seed by seed")
    n = len(row_scores)
    gaps = [a - b for a, b in zip(row_scores, base_scores)]
    t, p = paired_t(gaps)
    result = {"seeds": n, "outcome": "undecided", "more_seeds": True, "paired_t": t, "paired_t_p": p, "gaps": gaps,
              "mean_gap": statistics.mean(gaps) if gaps else None}
    if n < MIN_SEEDS:  # too few runs for a distribution: ASO is not run
        return result
    ahead, ahead_low = aso_eps(tuple(row_scores), tuple(base_scores), ASO_ITERATIONS)
    behind, behind_low = aso_eps(tuple(base_scores), tuple(row_scores), ASO_ITERATIONS)
    outcome = "ahead" if ahead < ASO_THRESHOLD else "behind" if behind < ASO_THRESHOLD else "undecided"
    return {**result, "outcome": outcome, "more_seeds": outcome == "undecided" and n < MORE_SEEDS,
            "aso_eps_min": ahead, "aso_eps_min_range": [ahead_low, ahead],
            "aso_eps_min_reverse": behind, "aso_eps_min_reverse_range": [behind_low, behind]}


def bimodal(copy_rates, bleus):
    """Where a row's runs split in two by how much they copy their source: a gap wider than ``COPY_GAP`` between
    consecutive copy rates, the runs that copy more all scoring lower test BLEU than those that copy less.  The
    indices of the runs that copy more, or None."""
    if len(copy_rates) < 2:
        return None
    order = sorted(range(len(copy_rates)), key=copy_rates.__getitem__)
    cut, width = max(((i + 1, copy_rates[order[i + 1]] - copy_rates[order[i]]) for i in range(len(order) - 1)),
                     key=lambda pair: pair[1])
    low, high = order[:cut], order[cut:]
    if width <= COPY_GAP or max(bleus[i] for i in high) >= min(bleus[i] for i in low):
        return None
    return sorted(high)


def describe(result):
    """One phrase for a test over seeds."""
    if result["seeds"] == 0:
        return "not compared (no seed paired)"
    p = result["paired_t_p"]
    t = "" if result["paired_t"] is None else f"paired t {result['paired_t']:.2f}, p " + (
        "< 0.001" if p < 0.001 else f"{p:.3f}")
    if "aso_eps_min" not in result:
        return (f"undecided on {result['seeds']} seed{'s' if result['seeds'] > 1 else ''} (ASO needs "
                f"{MIN_SEEDS}{'; ' + t if t else ''}; more seeds needed)")
    low, high = result["aso_eps_min_range"]
    rev_low, rev_high = result["aso_eps_min_reverse_range"]
    more = f"; more seeds needed (at least {MORE_SEEDS})" if result["more_seeds"] else ""
    return (f"{result['outcome']} on {result['seeds']} seeds (ASO eps_min {high:.2f} [{low:.2f}-{high:.2f}], "
            f"reverse {rev_high:.2f} [{rev_low:.2f}-{rev_high:.2f}]{'; ' + t if t else ''}{more})")
