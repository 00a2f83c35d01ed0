"""The benchmark's instruments across machines and training runs: pinned kernels and their fingerprint, pairing by
it, and the test over seeds (Almost Stochastic Order) that the verdict uses."""

import json
import subprocess
import sys
import types

import pytest

from l2t_fairseq.benchmark import kernels, over_seeds, report
from l2t_fairseq.benchmark.report import summarize
from l2t_fairseq.benchmark.results_md import markdown
from l2t_fairseq.benchmark.test_set import write_lines
from l2t_fairseq.benchmark.verdict import verdict

META = {"date": "2026-12-07", "machine": "test", "command": "test", "data": "test", "seeds": [1, 2, 3],
        "max_update": 100, "finished_runs": 6, "planned_runs": None}


@pytest.fixture
def quick_aso(monkeypatch):
    """ASO with 200 bootstrap iterations instead of 1,000, and sacrebleu's paired bootstrap with 1,000 resamples
    instead of 10,000 (each call takes seconds): enough for the decisions these records are built to give, none of
    which reads a p-value near 0.05; the test of a row ahead of every run keeps the report's own settings."""
    monkeypatch.setattr(over_seeds, "ASO_ITERATIONS", 200)
    monkeypatch.setattr(report, "BOOTSTRAP_SAMPLES", 1000)


def child_fingerprint(**env):
    import os

    result = subprocess.run([sys.executable, "-m", "l2t_fairseq.benchmark.kernels", "--here"], capture_output=True,
                            text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS="1", **env))
    return json.loads(result.stdout.splitlines()[-1])


def test_the_fingerprint_is_deterministic_and_sees_the_kernels_torch_dispatches_to():
    first, again = child_fingerprint(), child_fingerprint()
    assert first == again and len(first["kernel_fingerprint"]) == kernels.DIGEST_CHARS
    # torch's unvectorized kernels round otherwise: the fingerprint tells the runs apart
    plain = child_fingerprint(ATEN_CPU_CAPABILITY="default")
    assert plain["capability"] == "DEFAULT" and plain["kernel_fingerprint"] != first["kernel_fingerprint"]


def test_the_fingerprint_is_computed_once_per_machine_and_settings(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "computed", lambda threads, environ: calls.append(threads) or
                        {"kernel_fingerprint": f"fp{threads}{environ.get('MKL_CBWR', '')}", "capability": "X"})
    cache = str(tmp_path / "cache.json")
    pinned = kernels.pin_kernels(True, {})
    assert kernels.fingerprint(1, pinned, cache)["kernel_fingerprint"] == "fp1AVX2"
    assert kernels.fingerprint(1, pinned, cache)["kernel_fingerprint"] == "fp1AVX2" and calls == [1]
    assert kernels.fingerprint(2, pinned, cache)["kernel_fingerprint"] == "fp2AVX2" and calls == [1, 2]
    assert kernels.fingerprint(1, {}, cache)["kernel_fingerprint"] == "fp1" and calls == [1, 2, 1]  # unpinned
    assert len(json.load(open(cache))) == 3


def test_pinning_sets_and_clears_the_variables_the_runs_inherit():
    environ = {"MKL_CBWR": "COMPATIBLE", "PATH": "/bin"}
    assert kernels.pin_kernels(True, environ) == kernels.PINNED and environ["MKL_CBWR"] == "AVX2"
    assert kernels.pin_kernels(False, environ) == {} and environ == {"PATH": "/bin"}


def test_a_record_from_other_kernels_is_not_the_same_run(tmp_path):
    from l2t_fairseq.benchmark.command_lines import same_run_record
    from l2t_fairseq.benchmark.runner import Benchmark

    command = ["python", "-c", "child", "data", "--seed", "1", "--save-dir", "a"]
    (tmp_path / "cross_entropy-seed1.json").write_text(json.dumps(
        {"command": "data --seed 1 --save-dir b", "kernel_fingerprint": "aaaa"}))
    for here, same in (("aaaa", True), ("bbbb", False)):
        bench = types.SimpleNamespace(kernel_facts=lambda here=here: {"kernel_fingerprint": here})
        found = same_run_record(str(tmp_path), "cross_entropy-seed1", command,
                                lambda record, bench=bench: Benchmark.same_kernels(bench, record))
        assert (found is not None) == same


def records(tmp_path, bleu, copies=None, fingerprints=None, sources=20):
    """Runs of ``bleu`` ({row: [test BLEU per seed]}), their hypotheses copying their source ``copies`` ({row: [how
    many of the ``sources`` lines per seed]}), on kernels ``fingerprints`` ({(row, seed): fingerprint})."""
    source = [f"quelle {i} wort ." for i in range(sources)]
    (tmp_path / "source.txt").write_text("\n".join(source) + "\n")
    (tmp_path / "reference.txt").write_text("\n".join(f"target {i} word ." for i in range(sources)) + "\n")
    runs = {}
    for row, scores in bleu.items():
        for seed, score in enumerate(scores, 1):
            copied = (copies or {}).get(row, [0] * len(scores))[seed - 1]
            write_lines(str(tmp_path / f"{row}-seed{seed}.hyp.gz"),
                        source[:copied] + [f"target {i} word ." for i in range(copied, sources)])
            runs.setdefault(str(seed), {})[row] = {
                "test_bleu": score, "best_dev_bleu": score, "train_seconds": 10.0, "peak_rss_mib": 500.0,
                "updates": 100, "kernel_fingerprint": (fingerprints or {}).get((row, seed), "same")}
    return runs


def test_runs_on_other_kernels_are_reported_unpaired_and_not_compared(tmp_path, quick_aso):
    runs = records(tmp_path, {"cross_entropy": [30.0, 31.0, 32.0, 33.0], "l2t_dlf": [31.0, 45.0, 33.0, 34.0]},
                   fingerprints={("l2t_dlf", 2): "another machine"})
    summary = summarize(runs, ["cross_entropy", "l2t_dlf"], str(tmp_path))
    s = summary["l2t_dlf"]
    assert s["paired_seeds"] == [1, 3, 4] and s["unpaired_seeds"] == [2]
    assert len(s["paired_bootstrap_p"]) == 3 and s["gap_to_ce"] == pytest.approx(1.0)  # not 4.5 with seed 2
    assert s["over_seeds"]["seeds"] == 3 and s["over_seeds"]["gaps"] == [1.0, 1.0, 1.0]
    text = markdown(summary, META, runs)
    assert "unpaired, not compared: seed(s) 2" in text
    assert "| l2t_dlf | 2 | 45.00 | - | 0.0% | another machine |" in text


def test_a_bimodal_row_is_named_and_its_verdict_asks_for_more_seeds(tmp_path, quick_aso):
    """Cross-entropy's seed 1 copies its source in 12 of 20 outputs and scores far lower; seeds 2 and 3 copy 5 and
    4: two kinds of run.  The teacher row is ahead on the mean, but the test over seeds cannot tell on 3 seeds."""
    runs = records(tmp_path, {"cross_entropy": [13.8, 21.4, 22.9], "l2t_dlf": [24.2, 20.0, 23.5]},
                   copies={"cross_entropy": [12, 5, 4], "l2t_dlf": [5, 6, 4]})
    summary = summarize(runs, ["cross_entropy", "l2t_dlf"], str(tmp_path))
    assert summary["cross_entropy"]["bimodal_copying_seeds"] == [1]
    assert "bimodal_copying_seeds" not in summary["l2t_dlf"]
    assert "cross_entropy is bimodal: seed(s) 1 copy their source far more often" in markdown(summary, META, runs)
    test = summary["l2t_dlf"]["over_seeds"]
    assert test["outcome"] == "undecided" and test["more_seeds"]
    assert verdict(summary, runs)["l2t_dlf"]["checks"]["ahead of cross-entropy over training runs"] is None


def test_a_row_ahead_on_every_seed_by_a_small_margin_is_not_called_ahead_on_three_seeds(quick_aso):
    """0.1 ahead on each seed, within a seed spread of 1: the paired t-test sees the consistency, ASO does not see
    a distribution of training runs that dominates; more seeds are asked for."""
    test = over_seeds.compare([30.1, 31.1, 32.1], [30.0, 31.0, 32.0])
    assert test["outcome"] == "undecided" and test["more_seeds"] and test["aso_eps_min"] > over_seeds.ASO_THRESHOLD
    assert test["paired_t"] is None  # the gaps do not vary: no t statistic
    t, p = over_seeds.paired_t([0.1, 0.12, 0.09])
    assert t > 0 and p < 0.05


def test_a_row_ahead_on_the_mean_with_one_large_loss_is_undecided(quick_aso):
    test = over_seeds.compare([33.0, 34.0, 29.0], [30.0, 31.0, 32.0])
    assert test["mean_gap"] == pytest.approx(1.0) and test["outcome"] == "undecided" and test["more_seeds"]
    assert test["paired_t_p"] > 0.05


def test_a_row_ahead_of_every_run_is_ahead_and_the_other_behind():
    ahead = over_seeds.compare([31.5, 32.5, 33.5], [30.0, 31.0, 32.0])
    assert ahead["outcome"] == "ahead" and not ahead["more_seeds"]
    low, high = ahead["aso_eps_min_range"]
    assert low <= high < over_seeds.ASO_THRESHOLD  # on every ASO seed: stable under its own resampling
    assert over_seeds.compare([30.0, 31.0, 32.0], [31.5, 32.5, 33.5])["outcome"] == "behind"


def test_undecided_on_as_many_seeds_as_are_asked_for_is_no_gain(tmp_path, quick_aso):
    scores = {"cross_entropy": [30.0, 31.0, 32.0, 33.0, 34.0], "l2t_dlf": [33.0, 34.0, 29.0, 33.5, 34.2]}
    runs = records(tmp_path, scores)
    summary = summarize(runs, list(scores), str(tmp_path))
    assert summary["l2t_dlf"]["over_seeds"]["outcome"] == "undecided"
    v = verdict(summary, runs)["l2t_dlf"]
    assert v["checks"]["ahead of cross-entropy over training runs"] is False and v["gain"] is False


def test_bimodal_needs_a_gap_and_the_copying_runs_scoring_lower():
    assert over_seeds.bimodal([0.60, 0.35, 0.33], [13.8, 21.4, 22.9]) == [0]
    assert over_seeds.bimodal([0.40, 0.35, 0.33], [13.8, 21.4, 22.9]) is None  # no gap wider than 15 points
    assert over_seeds.bimodal([0.60, 0.35, 0.33], [23.0, 21.4, 22.9]) is None  # copying more, yet scoring higher
    assert over_seeds.bimodal([0.1, 0.12, 0.5, 0.55], [30.0, 29.0, 20.0, 21.0]) == [2, 3]


def test_the_verdict_applies_every_check_of_the_rule(tmp_path, quick_aso):
    """Ahead of cross-entropy, of the loss at its initial coefficients and of label smoothing over training runs,
    above cross-entropy given the same time: a gain passes every check, fails on one that fails, and stays open on
    one not yet measured."""
    from l2t_fairseq.benchmark.verdict import CE_CHECK, FIXED_CHECK, RIVALS, verdict_lines

    ce = [30.0, 31.0, 32.0]
    scores = {"cross_entropy": ce, "label_smoothed": [b + 0.2 for b in ce], "l2t_dlf": [b + 2.5 for b in ce],
              "l2t_dlf_frozen": [b + 0.5 for b in ce], "cross_entropy_equal_time": [b + 2.0 for b in ce],
              "l2t_dlf_fixed": [b + 0.3 for b in ce]}

    def judged(scores):
        runs = records(tmp_path, scores)
        return verdict(summarize(runs, list(scores), str(tmp_path)), runs)

    verdicts = judged(scores)
    online, frozen = verdicts["l2t_dlf"], verdicts["l2t_dlf_frozen"]
    assert online["gain"] is True and online["margins"]["cross_entropy_equal_time"] == pytest.approx(0.5)
    assert online["checks"][FIXED_CHECK] is True and online["margins"]["l2t_dlf_fixed"] == pytest.approx(2.2)
    # the frozen row is 0.5 ahead on every seed, within a seed spread of 1: more seeds are asked for; and cross-
    # entropy given the same time is ahead of it
    assert frozen["gain"] is False and frozen["checks"][CE_CHECK] is None
    assert frozen["checks"][RIVALS["cross_entropy_equal_time"]] is False
    assert "more seeds needed" in verdict_lines(verdicts)[4]
    # without the fixed loss, what learning the coefficients adds is not measured: open
    verdicts = judged({row: s for row, s in scores.items() if row != "l2t_dlf_fixed"})
    assert verdicts["l2t_dlf"]["gain"] is None and verdicts["l2t_dlf"]["checks"][FIXED_CHECK] is None
    # label smoothing on two seeds: not enough to decide against it
    verdicts = judged({**scores, "label_smoothed": scores["label_smoothed"][:2]})
    assert verdicts["l2t_dlf"]["gain"] is None and verdicts["l2t_dlf"]["checks"][RIVALS["label_smoothed"]] is None
    # without the equal-time row the verdict stays open, and says what is missing
    verdicts = judged({row: s for row, s in scores.items() if row != "cross_entropy_equal_time"})
    assert verdicts["l2t_dlf"]["gain"] is None
    assert "**open**" in verdict_lines(verdicts)[3] and "Not yet measured: above cross-entropy given the same time" \
        in verdict_lines(verdicts)[3]
    # on two paired seeds nothing is decided, not even a check that fails there
    verdicts = judged({row: s[:2] for row, s in scores.items()})
    assert verdicts["l2t_dlf"]["gain"] is None and set(verdicts["l2t_dlf"]["checks"].values()) == {None}
    assert "on 2 of the 3 seeds it needs" in verdict_lines(verdicts)[3]
