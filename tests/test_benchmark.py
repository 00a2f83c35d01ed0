"""scripts/benchmark.py end to end on the tiny IWSLT'14 slice: every output it promises, from real runs."""

import json

from conftest import run


def test_benchmark_writes_its_table_json_and_plots(small_data, tmp_path):
    out = tmp_path / "benchmark"
    result = run(
        "python", "scripts/benchmark.py", "--data", small_data, "--out", out, "--seeds", "1", "2",
        "--max-update", "6", "--losses", "l2t_dlf", "sequence_risk", "cross_entropy",
        "--l2t-flags=--teacher-interval 2 --unroll-steps 1",
    )
    with open(out / "results.json") as f:
        results = json.load(f)
    summary = results["summary"]
    assert list(summary) == ["cross_entropy", "sequence_risk", "l2t_dlf"]  # cross-entropy first: the baseline
    for name, row in summary.items():
        mean, std = row["test_bleu"]
        assert 0 <= mean <= 100 and std >= 0
        assert row["seconds_per_update"][0] > 0 and row["peak_rss_mib"][0] > 0
        assert row["seconds_per_update_ratio"] > 0
    assert summary["cross_entropy"]["train_seconds_ratio"] == 1.0
    for seed in ("1", "2"):
        runs = results["runs"][seed]
        assert runs["sequence_risk"]["updates"] == 6  # 5 cross-entropy updates, then 1 of MRT
        assert results["dev_bleu_curves"][seed]["l2t_dlf"], "no dev BLEU was parsed from the validation log"
    table = (out / "results.md").read_text()
    assert "| l2t_dlf |" in table and "| actor-critic | not built" in table and table in result.stdout
    for plot in ("dev_bleu.png", "phi.png", "teacher_dev_measure.png"):
        assert (out / plot).stat().st_size > 10_000, plot
    records = [json.loads(line) for line in (out / "l2t_dlf-seed1" / "teacher.jsonl").read_text().splitlines()]
    assert [r["update"] for r in records] == [2, 4]
