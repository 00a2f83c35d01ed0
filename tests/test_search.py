"""l2t-search: dev BLEU of teacher settings, never the test set, with the two-phase configurations."""

import json

from conftest import CHEAP_TEACHER_STEPS, run

from l2t_fairseq.benchmark.search import with_teacher_sources


def test_search_scores_configurations_on_dev_only(small_data, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    result = run(
        "l2t-search", "--preset", "iwslt14-small", "--data", small_data, "--out", out,
        "--work", work, "--max-update", "6", "--validate-every", "3", "--jobs", "2",
        "--configs", "cross_entropy", "adam_relative_k100_frozen",
        f"--l2t-flags=--teacher-interval 2 --unroll-steps 1 {CHEAP_TEACHER_STEPS}",
    )
    search = json.loads((out / "search.json").read_text())
    configs = search["configs"]
    # cross-entropy's convergence, from its dev curve (validations at 3 and 6)
    convergence = search["meta"]["ce_convergence"]
    assert [budget for budget, _ in convergence["gains"]] == [3, 6] and convergence["budget"] in (3, 6, None)
    # the frozen configuration needs the teacher adam_relative_k100 learns: that run is added and done first
    assert list(configs) == ["cross_entropy", "adam_relative_k100", "adam_relative_k100_frozen"]
    for entry in configs.values():
        assert entry["seeds"] == [1] and 0 <= entry["best_dev_bleu"][0] <= 100
    learned = configs["adam_relative_k100"]
    assert learned["time_ratio_to_ce"] > 0 and "dev_gain_to_ce" in learned
    assert 0 <= learned["positive_steps"] <= 1 and learned["phi_max_over_min"] >= 1
    frozen = json.loads((out / "search-records" / "adam_relative_k100_frozen-seed1.json").read_text())
    assert "adam_relative_k100-seed1.teacher.pt" in frozen["command"] and "--freeze-teacher" in frozen["command"]
    # selection on the validation set only: nothing decoded the test set
    assert not list(out.glob("search-records/*.hyp*")) and not list(work.glob("*/generate.log"))
    assert not (out / "records").exists()  # the benchmark's records folder is never written by the search
    assert "test_bleu" not in frozen
    table = (out / "search.md").read_text()
    assert "| adam_relative_k100_frozen | 1 |" in table and table in result.stdout and "Cross-entropy has " in table


def test_search_reuses_only_the_benchmarks_runs_of_the_same_command(small_data, tmp_path):
    common = ["l2t-search", "--preset", "iwslt14-small", "--data", small_data,
              "--max-update", "4", "--validate-every", "2", "--jobs", "1", "--configs", "cross_entropy"]
    first = tmp_path / "first"
    run(*common, "--out", first, "--work", tmp_path / "work1", "--benchmark-records", "")
    trained = json.loads((first / "search-records" / "cross_entropy-seed1.json").read_text())
    benchmark = tmp_path / "benchmark"
    benchmark.mkdir()
    (benchmark / "cross_entropy-seed1.json").write_text(json.dumps(trained))

    # the same command (up to its training folder): recorded, not trained again
    work = tmp_path / "work2"
    result = run(*common, "--out", tmp_path / "second", "--work", work, "--benchmark-records", benchmark)
    assert "cross_entropy-seed1: recorded, skipped" in result.stdout and not (work / "cross_entropy-seed1").exists()
    reused = json.loads((tmp_path / "second" / "search.json").read_text())["configs"]["cross_entropy"]
    assert reused["best_dev_bleu"][0] == trained["best_dev_bleu"]

    # another command (here another seed in the record): trained again
    (benchmark / "cross_entropy-seed1.json").write_text(
        json.dumps(dict(trained, command=trained["command"].replace("--seed 1", "--seed 7")))
    )
    work = tmp_path / "work3"
    result = run(*common, "--out", tmp_path / "third", "--work", work, "--benchmark-records", benchmark)
    assert "recorded, skipped" not in result.stdout and (work / "cross_entropy-seed1" / "train.log").is_file()


def test_a_teacher_trained_across_students_pulls_in_every_run_before_it():
    assert with_teacher_sources(["past_u20_trained_frozen", "cross_entropy"]) == [
        "cross_entropy", "past_u20", "past_u20_second_student", "past_u20_trained_frozen"]


def test_a_configuration_can_replace_the_presets_student_flags(small_data, tmp_path):
    out = tmp_path / "out"
    run("l2t-search", "--preset", "iwslt14-small", "--data", small_data, "--out", out, "--work", tmp_path / "work",
        "--max-update", "2", "--validate-every", "2", "--jobs", "1", "--configs", "cross_entropy_lr0.5",
        "--benchmark-records", "")
    command = json.loads((out / "search-records" / "cross_entropy_lr0.5-seed1.json").read_text())["command"].split()
    lrs = [command[i + 1] for i, word in enumerate(command) if word == "--lr"]
    assert lrs[-1] == "0.5" and len(lrs) == 2  # the preset's, then the configuration's, which fairseq takes
    entry = json.loads((out / "search.json").read_text())["configs"]["cross_entropy_lr0.5"]
    assert entry["flags"].endswith("--lr 0.5")
    # --report: the tables from the records, nothing trained
    report = run("l2t-search", "--preset", "iwslt14-small", "--data", small_data, "--out", out, "--work",
                 tmp_path / "work", "--max-update", "2", "--configs", "cross_entropy_lr0.5", "cross_entropy",
                 "--benchmark-records", "", "--report")
    assert " start " not in report.stdout and "| cross_entropy_lr0.5 | 1 |" in report.stdout


def test_a_configuration_can_start_from_the_cross_entropy_run(small_data, tmp_path):
    """The authors' start: the cross-entropy run of the same seed, from its checkpoint half-way, at the learning
    rate it had reached there, found in the benchmark's training folder when its record is reused."""
    import torch

    common = ["l2t-search", "--preset", "iwslt14-small", "--data", small_data, "--max-update", "4",
              "--validate-every", "2", "--jobs", "1",
              f"--l2t-flags=--teacher-interval 1 --unroll-steps 1 {CHEAP_TEACHER_STEPS}"]
    first = tmp_path / "first"
    run(*common, "--out", first, "--work", tmp_path / "benchmark-work", "--configs", "cross_entropy",
        "--benchmark-records", "")
    out, work = tmp_path / "out", tmp_path / "work"
    result = run(*common, "--out", out, "--work", work, "--configs", "cross_entropy", "past_u20_from_ce_phi1",
                 "cross_entropy_halve400", "--benchmark-records", first / "search-records",
                 "--benchmark-work", tmp_path / "benchmark-work")
    assert "cross_entropy-seed1: recorded, skipped" in result.stdout
    ce = json.loads((first / "search-records" / "cross_entropy-seed1.json").read_text())
    record = json.loads((out / "search-records" / "past_u20_from_ce_phi1-seed1.json").read_text())
    command = record["command"].split()
    start = command[command.index("--finetune-from-model") + 1]
    assert start.startswith(str(tmp_path / "benchmark-work" / "cross_entropy-seed1" / "checkpoint_"))
    assert start.endswith("_2.pt")
    reached = torch.load(start, map_location="cpu", weights_only=False)["last_optimizer_state"]["param_groups"][0]
    lrs = [command[i + 1] for i, word in enumerate(command) if word == "--lr"]
    schedulers = [command[i + 1] for i, word in enumerate(command) if word == "--lr-scheduler"]
    assert float(lrs[-1]) == reached["lr"] and schedulers[-1] == "fixed"
    assert command[command.index("--phi-init") + 1] == "1" and command[command.index("--max-update") + 1] == "2"
    # the record covers the whole budget: the cross-entropy part (its curve and prorated cost), then the fine-tune
    assert record["updates"] == 4 and record["dev_bleu_curve"][0] == ce["dev_bleu_curve"][0]
    assert [u for u, _ in record["dev_bleu_curve"]] == [2, 4]
    assert record["cpu_seconds"] > ce["cpu_seconds"] / 2
    # a halving schedule from the same start: the learning rate reached there, then fairseq's step schedule
    halving = json.loads((out / "search-records" / "cross_entropy_halve400-seed1.json").read_text())["command"].split()
    assert halving[halving.index("--finetune-from-model") + 1] == start
    assert [halving[i + 1] for i, word in enumerate(halving) if word == "--lr-scheduler"][-1] == "step"
    assert [halving[i + 1] for i, word in enumerate(halving) if word == "--lr"][-1] == lrs[-1]
    assert halving[halving.index("--lr-deacy-period") + 1] == "400"
