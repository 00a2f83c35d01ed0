"""l2t-benchmark end to end on the tiny IWSLT'14 slice: every row, the significance tests, resuming."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import CHEAP_TEACHER_STEPS, run

from l2t_fairseq.benchmark import presets
from l2t_fairseq.benchmark.machine import cpu_kernels
from l2t_fairseq.benchmark.presets import PRESETS
from l2t_fairseq.benchmark.test_set import read_lines, write_lines

# (the fine-tunes from a cross-entropy checkpoint, sequence_risk among them, have tests of their own below)
ROWS = ["cross_entropy", "l2t_dlf", "l2t_dlf_frozen", "cross_entropy_equal_time"]
L2T_FLAGS = f"--l2t-flags=--teacher-interval 2 --unroll-steps 1 {CHEAP_TEACHER_STEPS}"


def benchmark(data, out, work, *rows):
    return run(
        "l2t-benchmark", "--preset", "iwslt14-small", "--data", data, "--out", out, "--work", work,
        "--seeds", "1", "2", "--max-update", "6", "--validate-every", "3", "--jobs", "2",
        L2T_FLAGS, "--rows", *rows,
    )


def test_benchmark_rows_significance_plots_and_resume(small_data, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    first = benchmark(small_data, out, work, *ROWS)
    results = json.loads((out / "results.json").read_text())
    summary, runs = results["summary"], results["runs"]
    assert list(summary) == ROWS  # cross-entropy first: the baseline
    assert results["meta"]["finished_runs"] == results["meta"]["planned_runs"] == 8
    for row, s in summary.items():
        mean, std = s["test_bleu"]
        assert 0 <= mean <= 100 and std >= 0 and s["seeds"] == [1, 2]
        assert s["train_seconds_ratio"] > 0 and s["cpu_seconds_ratio"] > 0 and s["peak_rss_mib_ratio"] > 0
        if row == "cross_entropy":
            assert "paired_bootstrap_p" not in s and s["train_seconds_ratio"] == s["cpu_seconds_ratio"] == 1.0
        else:  # sacrebleu's paired bootstrap against cross-entropy, one p-value per seed
            assert len(s["paired_bootstrap_p"]) == 2 and all(0 < p <= 1 for p in s["paired_bootstrap_p"])
            assert 0 <= s["fraction_p_below_0.05"] <= 1
            differences = [runs[seed][row]["test_bleu"] - runs[seed]["cross_entropy"]["test_bleu"] for seed in "12"]
            assert s["gap_to_ce"] == pytest.approx(sum(differences) / 2)  # paired: the same seeds
            # the test over training runs, on the same seeds
            assert s["over_seeds"]["seeds"] == 2 and s["over_seeds"]["gaps"] == pytest.approx(differences)
            assert s["unpaired_seeds"] == []
    # every run: pinned kernels, their fingerprint (one on this machine), its greedy test BLEU beside beam 5's
    fingerprints = {r["kernel_fingerprint"] for by_row in runs.values() for r in by_row.values()}
    assert len(fingerprints) == 1 and all(r["kernel_pins"]["ATEN_CPU_CAPABILITY"] == "avx2"
                                          for by_row in runs.values() for r in by_row.values())
    assert all(0 <= r["test_bleu_greedy"] <= 100 for by_row in runs.values() for r in by_row.values())
    for seed in ("1", "2"):
        ce, l2t = runs[seed]["cross_entropy"], runs[seed]["l2t_dlf"]
        # as many cross-entropy updates as fit in the L2T run's compute (CPU seconds)
        equal_time = runs[seed]["cross_entropy_equal_time"]["updates"]
        assert equal_time == round(l2t["cpu_seconds"] / (ce["cpu_seconds"] / ce["updates"]))
        # ... the cross-entropy run carried on from its end (its schedule reads the update number alone)
        carried = runs[seed]["cross_entropy_equal_time"]
        assert f"cross_entropy_equal_time-seed{seed}: extended at update 6" in first.stdout
        assert carried["resumed_at"] == [6] and carried["carries_on"].endswith(f"cross_entropy-seed{seed}")
        assert carried["dev_bleu_curve"][:2] == ce["dev_bleu_curve"] and len(carried["dev_bleu_curve"]) > 2
        assert l2t["dev_bleu_curve"] and [u for u, _ in ce["dev_bleu_curve"]] == [3, 6]
        hypotheses = read_lines(str(out / "records" / f"l2t_dlf-seed{seed}.hyp.gz"))
        assert len(hypotheses) == len((out / "records" / "reference.txt").read_text().splitlines())
    # the paper's test phase: seed 1's student is taught by seed 2's finished teacher, frozen
    frozen = runs["1"]["l2t_dlf_frozen"]
    assert "--freeze-teacher" in frozen["command"] and "l2t_dlf-seed2.teacher.pt" in frozen["command"]
    frozen_log = (out / "records" / "l2t_dlf_frozen-seed1.teacher.jsonl").read_text().splitlines()
    assert frozen_log and all("dev_expected_bleu" not in json.loads(line) for line in frozen_log)
    table = (out / "results.md").read_text()
    assert "| l2t_dlf_frozen | 2 |" in table and table in first.stdout
    online = runs["2"]["l2t_dlf"]
    assert f"| l2t_dlf | 2 | {online['test_bleu']:.2f} | {online['test_bleu_greedy']:.2f} " in table
    assert "Over training runs" in table
    for plot in ("dev_bleu.png", "phi.png", "phi_frequency.png", "teacher_steps.png", "phi_spread.png"):
        assert (out / plot).stat().st_size > 10_000, plot

    # a run cut off has no record: rerunning redoes it (and a new row), and skips every recorded run
    (out / "records" / "l2t_dlf_frozen-seed2.json").unlink()
    more = ["label_smoothed", "actor_critic", "cross_entropy_equal_time_actor_critic"]
    # (the equal-time row of l2t_dlf left out: its runs are still there to carry on)
    second = benchmark(small_data, out, work, *(row for row in ROWS if row != "cross_entropy_equal_time"), *more)
    assert "cross_entropy-seed1: recorded, skipped" in second.stdout
    started = sorted(re.findall(r"^\[[\d:]+\] start (\S+)$", second.stdout, re.M))  # the scheduler's lines
    assert started == ["actor_critic-seed1", "actor_critic-seed2", "cross_entropy_equal_time_actor_critic-seed1",
                       "cross_entropy_equal_time_actor_critic-seed2", "l2t_dlf_frozen-seed2", "label_smoothed-seed1",
                       "label_smoothed-seed2"]
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["finished_runs"] == 12 and "label_smoothed" in results["summary"]
    # cross-entropy given the actor-critic's compute carries on the longest shorter cross-entropy run of its seed
    for seed, by_row in results["runs"].items():
        ce, equal_time = by_row["cross_entropy"], by_row["cross_entropy_equal_time_actor_critic"]
        assert equal_time["updates"] == round(by_row["actor_critic"]["cpu_seconds"]
                                              / (ce["cpu_seconds"] / ce["updates"]))
        source = max((r for r in (ce, runs[seed]["cross_entropy_equal_time"]) if r["updates"] < equal_time["updates"]),
                     key=lambda r: r["updates"])
        assert equal_time["carries_on"].endswith(f"{source['row']}-seed{seed}")
        assert equal_time["resumed_at"] == [source["updates"]]
        assert equal_time["dev_bleu_curve"][:len(source["dev_bleu_curve"])] == source["dev_bleu_curve"]
    gap = results["summary"]["actor_critic"]["gap_to_equal_time"]
    assert f"actor_critic {gap:+.2f}" in (out / "results.md").read_text()
    assert results["runs"]["1"]["cross_entropy"] == runs["1"]["cross_entropy"]  # not redone
    # actor-critic fine-tunes the cross-entropy run from its update 3, the critic alone for the first half
    actor_critic = results["runs"]["1"]["actor_critic"]
    assert actor_critic["updates"] == 6
    assert re.search(r"cross_entropy-seed1/checkpoint_\d+_3\.pt", actor_critic["command"])
    assert "--critic-pretrain-updates 1" in actor_critic["command"]

    # --report: the tables from the records alone, nothing trained, even with a run missing
    (out / "records" / "label_smoothed-seed2.json").unlink()
    report = benchmark(small_data, out, work, *ROWS, *more, "--report")
    assert not re.search(r"^\[[\d:]+\] start ", report.stdout, re.M)  # trains nothing
    assert (out / "results.md").read_text() in report.stdout
    assert json.loads((out / "results.json").read_text())["meta"]["finished_runs"] == 13


def test_the_trained_row_freezes_a_teacher_trained_across_other_students(small_data, tmp_path):
    """l2t_dlf_trained: l2t-train-teacher trains one teacher across students of seeds 101, 102 with the l2t_dlf
    row's flags and budget; the teacher after its best student, frozen, teaches the benchmark's seed; the
    training's cost is reported apart."""
    import torch

    out, work = tmp_path / "out", tmp_path / "work"
    result = run(
        "l2t-benchmark", "--preset", "iwslt14-small", "--data", small_data, "--out", out, "--work", work,
        "--seeds", "1", "--max-update", "4", "--validate-every", "2", "--jobs", "1",
        L2T_FLAGS, "--teacher-students", "2", "--teacher-patience", "2",
        "--rows", "cross_entropy", "l2t_dlf", "l2t_dlf_trained",
    )
    kept = out / "records" / "teacher-training"
    students = json.loads((kept / "students.json").read_text())
    assert [s["seed"] for s in students] == [101, 102]
    for student in students:
        assert "--max-update 4" in student["command"] and "--teacher-interval 2" in student["command"]
    # the second student's teacher goes on from the first's, Adam state included
    assert "--continue-teacher" in students[1]["command"]
    assert students[1]["teacher_adam_steps"] == 2 * students[0]["teacher_adam_steps"] > 0
    trained = json.loads((out / "records" / "l2t_dlf_trained-seed1.json").read_text())
    assert f"--teacher-path {kept / 'teacher_best.pt'}" in trained["command"]
    assert "--freeze-teacher" in trained["command"] and "--seed 1 " in trained["command"]
    best = max(students, key=lambda s: (s["best_dev_bleu"], -s["student"]))
    # the records carry the training to another machine: the students' folders stay in --work
    assert f"--save-dir {work / 'teacher-training' / 'student-1'}" in students[0]["command"]
    files = [kept / "teacher_best.pt", kept / f"teacher-after-student-{best['student']}.pt",
             work / "l2t_dlf_trained-seed1" / "checkpoint_last.pt"]
    teachers = [torch.load(f, map_location="cpu", weights_only=False)["extra_state"]["L2TTranslationTask"]["teacher"]
                for f in files]
    for name, value in teachers[0].items():
        assert torch.equal(value, teachers[1][name]) and torch.equal(value, teachers[2][name]), name
    meta = json.loads((out / "results.json").read_text())["meta"]["teacher_training"]
    assert meta["cpu_seconds"] == pytest.approx(sum(s["cpu_seconds"] for s in students)) and meta["in_ce_runs"] > 0
    assert "payback_students" in meta and "l2t_dlf_trained's teacher: trained across 2 students" in result.stdout


def test_a_cut_run_resumes_from_its_last_checkpoint(small_data, tmp_path):
    """--resume-cut-runs: a run cut off after its checkpoint of update 2 goes on from there; within the first
    epoch it ends as the uninterrupted run did (same dev curve, same test hypotheses), its cost is estimated
    from the last segment and the record says where it was resumed; one cut off on other kernels starts afresh."""
    import shutil

    out, work = tmp_path / "out", tmp_path / "work"
    command = ["l2t-benchmark", "--preset", "iwslt14-small", "--data", small_data, "--out", out, "--work", work,
               "--seeds", "1", "--max-update", "6", "--validate-every", "2", "--jobs", "1", "--rows", "cross_entropy",
               "--resume-cut-runs"]
    run(*command)
    records = out / "records"
    whole = json.loads((records / "cross_entropy-seed1.json").read_text())
    hypotheses = (records / "cross_entropy-seed1.hyp.gz").read_bytes()
    # cut off after the checkpoint of update 2: no record, checkpoint_last.pt is that checkpoint; its log ends
    # at update 3 and its last CPU snapshot says 1,000 s (as if it had been slow)
    run_dir = work / "cross_entropy-seed1"
    (records / "cross_entropy-seed1.json").unlink()
    shutil.copy(next(run_dir.glob("checkpoint_*_2.pt")), run_dir / "checkpoint_last.pt")
    log = (run_dir / "train.log").read_text()
    (run_dir / "train.log").write_text(log[:log.index("num_updates 4")] + "num_updates=3\n")
    (run_dir / "cpu.json").write_text(json.dumps({"cpu_seconds": 1000.0}))
    result = run(*command)
    assert "cross_entropy-seed1: cut off, resumed at update 2" in result.stdout
    resumed = json.loads((records / "cross_entropy-seed1.json").read_text())
    assert json.loads((run_dir / "command.json").read_text())["segments"] == [{"cpu_seconds": 1000.0, "reached": 3}]
    # the cut segment's cost per update (1,000 s over 3 updates) for the 2 it kept, plus the last segment's own
    assert 2000 / 3 < resumed["cpu_seconds"] < 2000 / 3 + 3 * whole["cpu_seconds"]
    assert resumed["resumed_at"] == [2] and resumed["dev_bleu_curve"] == whole["dev_bleu_curve"]
    assert [u for u, _ in resumed["dev_bleu_curve"]] == [2, 4, 6]
    assert (records / "cross_entropy-seed1.hyp.gz").read_bytes() == hypotheses
    assert (run_dir / "train.segment-1.log").is_file() and resumed["cpu_seconds"] > 0
    # cut off after its last update (while decoding): no segment measured the training's cost, so it trains again
    (records / "cross_entropy-seed1.json").unlink()
    result = run(*command)
    assert "cut off, resumed" not in result.stdout and not (run_dir / "train.segment-1.log").exists()
    again = json.loads((records / "cross_entropy-seed1.json").read_text())
    assert "resumed_at" not in again and again["dev_bleu_curve"] == whole["dev_bleu_curve"]
    # cut off on another machine's kernels: one run is trained on one kind, so it starts afresh
    (records / "cross_entropy-seed1.json").unlink()
    shutil.copy(next(run_dir.glob("checkpoint_*_2.pt")), run_dir / "checkpoint_last.pt")
    saved = json.loads((run_dir / "command.json").read_text())
    assert saved["kernels"] == again["kernel_fingerprint"]
    (run_dir / "command.json").write_text(json.dumps({**saved, "kernels": "0123456789abcdef"}))
    result = run(*command)
    assert "cut off on other kernels (0123456789abcdef), trained afresh" in result.stdout
    assert "cut off, resumed" not in result.stdout
    assert "resumed_at" not in json.loads((records / "cross_entropy-seed1.json").read_text())


def test_an_equal_time_run_under_a_decaying_step_schedule_holds_its_learning_rate_longer(small_data, tmp_path):
    """The learning rate held for 4 updates, then halved every update to 6 (the SGD LSTM preset's shape): cross-
    entropy given the L2T run's compute starts from the cross-entropy run's checkpoint of update 4 and holds the
    learning rate for the extra updates before the same decay (carried on from update 6 it would get them at a
    quarter of it and below); its record covers the whole run."""
    out = tmp_path / "out"
    run("l2t-benchmark", "--preset", "iwslt14-small", "--data", small_data, "--out", out, "--work", tmp_path / "work",
        "--seeds", "1", "--max-update", "6", "--validate-every", "2", "--jobs", "1",
        "--student-flags=--lr 3e-3 --lr-scheduler step --warmup-updates 4 --warmup-init-lr 3e-3 --lr-deacy-period 1 "
        "--lr-decay 0.5", L2T_FLAGS,
        "--rows", "cross_entropy", "l2t_dlf", "cross_entropy_equal_time")
    runs = json.loads((out / "results.json").read_text())["runs"]["1"]
    ce, equal_time = runs["cross_entropy"], runs["cross_entropy_equal_time"]
    total = round(runs["l2t_dlf"]["cpu_seconds"] / (ce["cpu_seconds"] / ce["updates"]))
    assert total > 6 and equal_time["updates"] == total
    command = equal_time["command"]
    assert re.search(r"--finetune-from-model \S*cross_entropy-seed1/checkpoint_\d+_4\.pt", command)
    assert f"--warmup-updates {total - 6}" in command and f"--max-update {total - 4}" in command
    assert "carries_on" not in equal_time
    # the dev curve: cross-entropy's to update 4, then the fine-tune's, shifted by 4
    assert equal_time["dev_bleu_curve"][:2] == ce["dev_bleu_curve"][:2] and equal_time["dev_bleu_curve"][-1][0] == total


def test_a_finished_run_extends_to_a_larger_budget(small_data, tmp_path):
    """--resume-cut-runs with a larger --max-update (and a new --out): a finished cross-entropy run goes on from
    its end to the new budget and ends as a run trained for that budget from the start; a teacher run, whose
    state reads the budget, would train again."""
    def benchmark_run(out, work, updates):
        return run("l2t-benchmark", "--preset", "iwslt14-small", "--data", small_data, "--out", out, "--work", work,
                   "--seeds", "1", "--max-update", str(updates), "--validate-every", "2", "--jobs", "1", "--rows",
                   "cross_entropy", "--resume-cut-runs")

    benchmark_run(tmp_path / "whole", tmp_path / "whole-work", 6)
    whole = json.loads((tmp_path / "whole" / "records" / "cross_entropy-seed1.json").read_text())
    benchmark_run(tmp_path / "short", tmp_path / "work", 4)
    result = benchmark_run(tmp_path / "long", tmp_path / "work", 6)
    assert "cross_entropy-seed1: extended at update 4" in result.stdout
    extended = json.loads((tmp_path / "long" / "records" / "cross_entropy-seed1.json").read_text())
    assert extended["resumed_at"] == [4] and extended["updates"] == 6
    assert extended["dev_bleu_curve"] == whole["dev_bleu_curve"]
    assert ((tmp_path / "long" / "records" / "cross_entropy-seed1.hyp.gz").read_bytes()
            == (tmp_path / "whole" / "records" / "cross_entropy-seed1.hyp.gz").read_bytes())
    # the same command as a teacher run's is not extended: the runner trains it again
    from l2t_fairseq.benchmark.command_lines import extends, without

    def command(updates, *flags):
        return [*without(shlex.split(extended["command"]), "--max-update", "--task"), *flags, "--max-update",
                str(updates)]

    assert extends(command(4), command(6)) and not extends(command(6), command(4))
    assert not extends(command(4, "--task", "l2t_translation"), command(6, "--task", "l2t_translation"))


def test_the_searchs_runs_of_the_same_command_are_taken_over(small_data, tmp_path):
    """--search-records: a cross-entropy run that l2t-search finished (e.g. measuring the budget) is not trained
    again: its record is taken over, its test set decoded from its best checkpoint, and a fine-tune starts from its
    checkpoints where the search left them; a search run of another budget is not the same run."""
    search, work = tmp_path / "search", tmp_path / "search-work"
    common = ["--preset", "iwslt14-small", "--data", small_data, "--seeds", "1", "--validate-every", "2",
              "--jobs", "1"]
    run("l2t-search", *common, "--out", search, "--work", work, "--max-update", "4", "--configs", "cross_entropy",
        "--benchmark-records", "")
    searched = json.loads((search / "search-records" / "cross_entropy-seed1.json").read_text())
    log = (work / "cross_entropy-seed1" / "train.log").read_text()

    def benchmark_run(out, updates, *rows):
        return run("l2t-benchmark", *common, "--out", out, "--work", tmp_path / "work", "--max-update", str(updates),
                   "--search-records", search / "search-records", "--rows", *rows)

    result = benchmark_run(tmp_path / "out", 4, "cross_entropy", "sequence_risk")
    assert "cross_entropy-seed1: trained by the search" in result.stdout
    record = json.loads((tmp_path / "out" / "records" / "cross_entropy-seed1.json").read_text())
    for key in ("command", "cpu_seconds", "dev_bleu_curve", "best_dev_bleu", "date"):
        assert record[key] == searched[key], key
    assert record["adopted_from"].endswith("cross_entropy-seed1.json") and 0 <= record["test_bleu"] <= 100
    assert (tmp_path / "out" / "records" / "cross_entropy-seed1.hyp.gz").is_file()
    assert (work / "cross_entropy-seed1" / "train.log").read_text() == log  # not trained again
    assert not (tmp_path / "work" / "cross_entropy-seed1").exists()
    mrt = json.loads((tmp_path / "out" / "records" / "sequence_risk-seed1.json").read_text())
    assert f"{work / 'cross_entropy-seed1'}/checkpoint_" in mrt["command"]
    result = benchmark_run(tmp_path / "longer", 6, "cross_entropy")
    assert "trained by the search" not in result.stdout and (tmp_path / "work" / "cross_entropy-seed1").is_dir()


def test_a_fine_tune_whose_cross_entropy_folder_is_gone_trains_it_again_to_its_start(small_data, tmp_path):
    """A machine that kept only the records: the cross-entropy run is trained again to the fine-tune's start,
    compared with its record's dev BLEU curve, and the fine-tune is the one it would have been; a retraining whose
    curve is not the record's (another machine's arithmetic) is still the fine-tune's start, which its record says."""
    out, work = tmp_path / "out", tmp_path / "work"
    records = out / "records"

    def benchmark_run():
        return run("l2t-benchmark", "--preset", "iwslt14-small", "--data", small_data, "--out", out, "--work", work,
                   "--seeds", "1", "--max-update", "6", "--validate-every", "3", "--jobs", "1",
                   "--rows", "cross_entropy", "sequence_risk")

    def forget_the_fine_tune():
        for path in records.glob("sequence_risk-seed1*"):
            path.unlink()

    benchmark_run()
    kept = (records / "sequence_risk-seed1.hyp.gz").read_bytes()
    first = json.loads((records / "sequence_risk-seed1.json").read_text())
    assert "start_trained_again" not in first
    assert first["kernels"] == cpu_kernels() and torch.__version__ in first["kernels"]
    shutil.rmtree(work)
    forget_the_fine_tune()
    result = benchmark_run()
    assert "cross_entropy-seed1: no checkpoint at update 3; trained again" in result.stdout
    mrt = json.loads((records / "sequence_risk-seed1.json").read_text())
    assert "cross_entropy-seed1-to-3/checkpoint_last.pt" in mrt["command"]
    assert mrt["start_trained_again"].endswith("cross_entropy-seed1-to-3") and mrt["start_same_as_record"]
    assert mrt["dev_bleu_curve"] == first["dev_bleu_curve"]
    assert (records / "sequence_risk-seed1.hyp.gz").read_bytes() == kept
    # a record that is not of the run trained again: the fine-tune starts from the retraining, and says so
    forget_the_fine_tune()
    ce = json.loads((records / "cross_entropy-seed1.json").read_text())
    ce["dev_bleu_curve"][0][1] += 1.0
    (records / "cross_entropy-seed1.json").write_text(json.dumps(ce))
    result = benchmark_run()
    assert "cross_entropy-seed1: trained again to update 3" in result.stdout and "is not its record's" in result.stdout
    assert f"{cpu_kernels()} here, {ce['kernels']} there" in result.stdout
    mrt = json.loads((records / "sequence_risk-seed1.json").read_text())
    assert mrt["start_same_as_record"] is False
    assert mrt["dev_bleu_curve"] == first["dev_bleu_curve"] and mrt["dev_bleu_curve"][0] != ce["dev_bleu_curve"][0]
    assert (records / "sequence_risk-seed1.hyp.gz").read_bytes() == kept


def test_a_failed_run_is_reported_and_nothing_after_it_starts(small_data, tmp_path):
    result = run(
        "l2t-benchmark", "--preset", "iwslt14-small", "--data", small_data, "--out", tmp_path / "out", "--work",
        tmp_path / "work", "--seeds", "1", "--max-update", "2", "--validate-every", "2", "--jobs", "1",
        "--l2t-flags=--teacher-interval 0", "--rows", "l2t_dlf", "l2t_dlf_frozen", check=False,
    )
    assert result.returncode != 0 and "l2t-benchmark: error:" in result.stderr
    assert "--teacher-interval must be at least 1" in result.stderr and "cannot run" not in result.stderr
    assert " start l2t_dlf_frozen" not in result.stdout


def test_a_run_in_segments_costs_each_segments_rate_times_the_updates_it_kept():
    from l2t_fairseq.benchmark.run_segments import whole_run_cpu

    # cut at 250 (last checkpoint 200, 100 s), then at 450 (checkpoint 400, 75 s); the last segment, 400-600, 40 s
    segments = [{"cpu_seconds": 100.0, "reached": 250}, {"cpu_seconds": 75.0, "reached": 450}]
    assert whole_run_cpu(segments, [200, 400], 40.0, 600) == pytest.approx(200 * 100 / 250 + 200 * 75 / 250 + 40)
    # a segment without a snapshot (an older run, or the run it carries on) costs the last segment's rate
    segments[0]["cpu_seconds"] = None
    assert whole_run_cpu(segments, [200, 400], 40.0, 600) == pytest.approx(200 * 40 / 200 + 200 * 75 / 250 + 40)
    assert whole_run_cpu([], [200, 400], 40.0, 600) == pytest.approx(600 * 0.2)


def test_stopping_the_benchmark_stops_the_training_run_it_waits_for(tmp_path):
    # the runner waits for its training runs in worker threads; SIGTERM (what `kill` sends) to it alone used to
    # leave the run training on, writing into the folder that the next --resume-cut-runs reads and writes
    log, pid_file = tmp_path / "train.log", tmp_path / "run.pid"
    trainer = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    runner = f"""
import concurrent.futures, sys
from l2t_fairseq.benchmark.run_segments import console_command, measured_run
def main():
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(measured_run, [sys.executable, "-c", {trainer!r}], {str(log)!r}).result()
console_command(main, "l2t-benchmark")
"""
    parent = subprocess.Popen([sys.executable, "-c", runner], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert parent.poll() is None and time.monotonic() < deadline, parent.stderr.read()
        time.sleep(0.1)
    child = int(pid_file.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child}") and open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the training run outlived the benchmark that was stopped"
        time.sleep(0.1)


def test_two_benchmarks_on_one_work_folder_share_the_runs_without_waiting(tmp_path, monkeypatch, capsys):
    import argparse

    from l2t_fairseq.benchmark import runner, scheduler

    args = argparse.Namespace(out=str(tmp_path / "out"), work=str(tmp_path / "work"), seeds=[1, 2], jobs=1,
                              threads=1, l2t_flags="", sequence_start_update=None,
                              rows=["cross_entropy", "l2t_dlf", "l2t_dlf_frozen"])
    os.makedirs(args.work)
    benchmark = runner.Benchmark(args, PRESETS["multi30k"])
    trained = []

    def record(row, seed):
        os.makedirs(benchmark.records, exist_ok=True)
        with open(benchmark.record_path(row, seed), "w") as f:
            json.dump({"row": row, "seed": seed}, f)
        return {"row": row, "seed": seed, "best_dev_bleu": 1.0, "train_seconds": 1.0}

    def run(row, seed, done):
        assert all(need in done for need in benchmark.dependencies(row, seed))
        trained.append(benchmark.key(row, seed))
        return record(row, seed)

    monkeypatch.setattr(benchmark, "run", run)
    monkeypatch.setattr(benchmark, "report", lambda done: "")
    # another process trains l2t_dlf-seed2: this one trains the rest but the frozen run that needs its teacher
    other = scheduler.claim(os.path.join(args.work, "l2t_dlf-seed2.lock"))
    assert other is not None and benchmark.scheduler.claim("l2t_dlf", 2) is None
    done = benchmark.run_all()
    assert trained == ["cross_entropy-seed1", "l2t_dlf-seed1", "cross_entropy-seed2", "l2t_dlf_frozen-seed2"]
    assert ("l2t_dlf", 2) not in done and ("l2t_dlf_frozen", 1) not in done
    assert "left to the other process (training ['l2t_dlf-seed2']): ['l2t_dlf_frozen-seed1', 'l2t_dlf-seed2']" \
        in capsys.readouterr().out
    # it finishes while this one runs again: the record is taken, and the frozen run that needed it follows
    trained.clear()
    monkeypatch.setattr(benchmark, "recorded", lambda: {})  # as if read before the other process finished
    record("l2t_dlf", 2)
    other.close()
    for key in done:
        os.remove(benchmark.record_path(*key))
    done = benchmark.run_all()
    assert ("l2t_dlf", 2) in done and trained[-1] == "l2t_dlf_frozen-seed1" and "l2t_dlf-seed2" not in trained
    assert "l2t_dlf-seed2: recorded by another process" in capsys.readouterr().out


def test_each_run_takes_the_threads_the_environment_asks_for(tmp_path, monkeypatch):
    """--threads, else OMP_NUM_THREADS (a suite of single-threaded workers, a batch job's allocation), else the
    cores shared by --jobs."""
    import argparse

    from l2t_fairseq.benchmark import runner

    def threads(flag, jobs):
        args = argparse.Namespace(out=str(tmp_path), threads=flag, jobs=jobs)
        return runner.Benchmark(args, PRESETS["multi30k"]).threads

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads(None, 2) == 1 and threads(3, 2) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads(None, 2) == 4 and threads(None, 16) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert threads(None, 1) == 8


def test_the_console_commands_do_not_log_every_librarys_debug_lines():
    # importing fairseq's models calls logging.basicConfig(level=DEBUG) (wav2vec2_classification): the
    # benchmark's log then held hundreds of matplotlib font-search lines per plot
    probe = "import logging, l2t_fairseq; logging.getLogger('probe').debug('DEBUG PROBE'); " \
            "logging.getLogger('probe').info('INFO PROBE')"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "INFO PROBE" in result.stderr and "DEBUG PROBE" not in result.stderr


def test_the_converged_budget_ignores_an_early_plateau():
    from l2t_fairseq.benchmark.report import converged_budget, convergence

    # an SGD student stuck early (200-400), then learning, then flat; a second seed 0.5 below
    first = [(200, 1.3), (400, 1.5), (600, 6.4), (800, 12.8), (1000, 30.0), (1200, 30.2), (1400, 30.3),
             (1600, 30.1), (1800, 30.4), (2000, 30.5)]
    second = [(u, b - 0.5) for u, b in first]
    gains = dict(convergence([first, second]))
    # over the last 20 %: at 400 from the best up to 320 (that of 200), at 1200 from that up to 960 (800)
    assert gains[400] == pytest.approx(0.2) and gains[1200] == pytest.approx(17.4)
    assert gains[1400] == pytest.approx(0.3) and gains[1600] == pytest.approx(0.1)
    assert converged_budget([first, second]) == 1600  # not 400: the plateau there ended
    assert converged_budget([first[:-1] + [(2000, 30.8)], second]) is None  # still rising at the end
    # a flat end too short to tell (from 1,600 on, but measured only to 1,600 or 1,800) is no convergence yet
    assert converged_budget([first[:8]]) is None and converged_budget([first[:9]]) is None


def test_cost_ratios_are_taken_over_the_seeds_both_rows_have(tmp_path):
    """Cross-entropy's extra seeds (here on a machine twice as slow) do not enter another row's cost ratio."""
    from l2t_fairseq.benchmark.report import summarize

    (tmp_path / "reference.txt").write_text("a b c\n")
    for name in ("cross_entropy-seed1", "cross_entropy-seed2", "cross_entropy-seed3", "l2t_dlf-seed1",
                 "l2t_dlf-seed2", "l2t_dlf-seed3"):
        write_lines(str(tmp_path / f"{name}.hyp.gz"), ["a b c"])

    def run(bleu, seconds):
        return {"test_bleu": bleu, "best_dev_bleu": bleu, "train_seconds": seconds, "cpu_seconds": seconds,
                "seconds_per_update": seconds / 100, "peak_rss_mib": 500.0, "updates": 100}

    runs = {str(seed): {"cross_entropy": run(30.0, 100.0 if seed <= 3 else 200.0)} for seed in range(1, 6)}
    for seed in (1, 2, 3):
        runs[str(seed)]["l2t_dlf"] = run(30.0, 250.0)
    summary = summarize(runs, ["cross_entropy", "l2t_dlf"], str(tmp_path))
    assert summary["cross_entropy"]["cpu_seconds"][0] == pytest.approx(140.0)  # its own mean: all five seeds
    assert summary["cross_entropy"]["cpu_seconds_ratio"] == 1.0
    for key in ("train_seconds", "cpu_seconds", "seconds_per_update"):
        assert summary["l2t_dlf"][f"{key}_ratio"] == pytest.approx(2.5)  # not 250 / 140
    assert summary["l2t_dlf"]["peak_rss_mib_ratio"] == pytest.approx(1.0)


def test_the_table_says_on_which_side_each_significant_seed_lies():
    """A seed significantly behind cross-entropy is not counted with the seeds significantly ahead of it."""
    from l2t_fairseq.benchmark.results_md import markdown

    cost = {"updates": [100, 0], "train_seconds": [10.0, 0], "peak_rss_mib": [500.0, 0]}
    summary = {
        "cross_entropy": {"test_bleu": [31.0, 1.0], "seeds": [1, 2, 3], **cost},
        "l2t_dlf": {"test_bleu": [31.0, 1.0], "seeds": [1, 2, 3], "paired_seeds": [1, 2, 3],
                    "paired_bootstrap_p": [0.01, 0.02, 0.3], "gap_per_seed": [0.8, -0.7, 0.1], **cost},
    }
    meta = {"date": "2026-11-27", "machine": "test", "command": "test", "data": "test", "seeds": [1, 2, 3],
            "max_update": 100, "finished_runs": 6, "planned_runs": None}
    table = {line.split(" | ")[0]: line.split(" | ") for line in markdown(summary, meta).splitlines()
             if line.startswith("| ")}
    column = table["| row"].index("p < 0.05 ahead / behind")
    assert table["| cross_entropy"][column] == "-" and table["| l2t_dlf"][column] == "1 / 1"


def test_label_smoothing_is_tested_against_each_teacher_row_directly(tmp_path):
    """Not through cross-entropy: each teacher row against label smoothing of the same seed, by the paired
    bootstrap with 10,000 resamples (a p-value near 0.05 then stays on its side whatever the resampling's seed)."""
    from l2t_fairseq.benchmark.report import BOOTSTRAP_SAMPLES, summarize
    from l2t_fairseq.benchmark.results_md import markdown

    assert BOOTSTRAP_SAMPLES >= 10_000
    references = [f"the word {i} is here" for i in range(40)]
    (tmp_path / "reference.txt").write_text("\n".join(references) + "\n")
    worse = [line if i % 3 else "nothing" for i, line in enumerate(references)]
    for seed in (1, 2, 3):
        for row, lines in (("cross_entropy", worse), ("label_smoothed", references), ("l2t_dlf", worse)):
            write_lines(str(tmp_path / f"{row}-seed{seed}.hyp.gz"), lines)

    def run(bleu):
        return {"test_bleu": bleu, "best_dev_bleu": bleu, "train_seconds": 10.0, "peak_rss_mib": 500.0,
                "updates": 100}

    runs = {str(s): {"cross_entropy": run(60.0), "label_smoothed": run(100.0), "l2t_dlf": run(60.0)} for s in (1, 2, 3)}
    summary = summarize(runs, ["cross_entropy", "label_smoothed", "l2t_dlf"], str(tmp_path))
    direct = summary["l2t_dlf"]["vs_label_smoothed"]
    assert direct["seeds"] == [1, 2, 3] and direct["gap"] == -40.0 and max(direct["paired_bootstrap_p"]) < 0.05
    meta = {"date": "2026-12-05", "machine": "test", "command": "test", "data": "test", "seeds": [1, 2, 3],
            "max_update": 100, "finished_runs": 9, "planned_runs": None,
            "bootstrap": {"resamples": BOOTSTRAP_SAMPLES, "seed": "12345"}}
    text = markdown(summary, meta)
    assert "l2t_dlf -40.00 (p " in text and "behind on 0 / 3 of 3 seeds" in text and "10,000 resamples" in text


def test_the_report_measures_how_often_outputs_copy_their_source(tmp_path):
    """The untranslated rate: the share of test outputs that share more than half their tokens with the source."""
    from l2t_fairseq.benchmark.report import copy_rates

    (tmp_path / "source.txt").write_text("ein hund läuft .\nzwei katzen schlafen .\n")
    write_lines(str(tmp_path / "cross_entropy-seed1.hyp.gz"), ["a dog runs .", "two cats sleep ."])
    write_lines(str(tmp_path / "cross_entropy-seed2.hyp.gz"), ["ein hund läuft .", "two cats sleep ."])
    assert copy_rates(str(tmp_path), "cross_entropy", ["1", "2"]) == [0.0, 0.5]
    (tmp_path / "source.txt").unlink()
    assert copy_rates(str(tmp_path), "cross_entropy", ["1", "2"]) == []  # records made before sources were kept


def test_the_report_says_which_seeds_start_alike_and_where_runs_were_resumed():
    from l2t_fairseq.benchmark.report import pairing_summary

    def facts(weights, batches, until=None):
        return {"pairing": {"initial_weights_sha256": weights, "first_batches_sha256": batches,
                            "same_batches_until": until}}

    runs = {"1": {"cross_entropy": facts("a", "b"), "l2t_dlf": facts("a", "b", until=600)},
            "2": {"cross_entropy": facts("c", "d"), "l2t_dlf": facts("e", "d")},
            "3": {"cross_entropy": {"pairing": None}}}
    summary = pairing_summary(runs)
    assert summary["probed_runs"] == 4 and summary["resumed_later"] == ["l2t_dlf seed 1 at 600"]
    assert summary["seeds"]["1"]["same_weights"] and not summary["seeds"]["2"]["same_weights"]
    assert summary["seeds"]["2"]["same_first_batches"] and summary["seeds"]["3"]["rows"] == 0
    # a row on data of its own (another vocabulary, other batches) is left out of the pairing, and named
    runs["1"]["cross_entropy_filtered0.5"] = facts("x", "y")
    summary = pairing_summary(runs)
    assert summary["seeds"]["1"]["same_weights"] and summary["own_data"] == ["cross_entropy_filtered0.5"]


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_is_a_valid_training_command(name):
    """Each preset's student flags parse as fairseq-train's, with the plugin's task and criterion; the paper's SGD
    LSTM holds lr 1.0 to update 4,000 and halves it every 400 after."""
    import torch
    from fairseq import optim, options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.optim import lr_scheduler


    preset = PRESETS[name]
    args = options.parse_args_and_arch(options.get_training_parser(), [
        preset["data"], "--user-dir", presets.PLUGIN, *presets.ROWS["l2t_dlf"], *preset["train"], *presets.EVAL_BLEU,
        "--max-update", str(preset["max_update"]),
    ])
    cfg = convert_namespace_to_omegaconf(args)
    optimizer = optim.build_optimizer(cfg.optimizer, [torch.nn.Parameter(torch.zeros(1))])
    scheduler = lr_scheduler.build_lr_scheduler(cfg.lr_scheduler, optimizer)
    if name == "multi30k-paper-lstm1-sgd":
        rates = {update: scheduler.step_update(update) for update in (0, 3999, 4000, 4399, 4400, 5999)}
        assert rates == {0: 1.0, 3999: 1.0, 4000: 1.0, 4399: 1.0, 4400: 0.5, 5999: 1.0 / 16}


def test_gpu_runs_drop_the_presets_cpu_flags_and_keep_records_of_their_own(tmp_path, monkeypatch):
    """l2t-benchmark --device cuda: the presets train and decode on the GPU, and a folder of CPU records is never
    mixed with GPU ones (records from before the device was recorded are the CPU's)."""
    from l2t_fairseq.benchmark import cli, machine

    for name, preset in PRESETS.items():
        on_gpu = machine.on_device(preset, "cuda")
        assert "--cpu" not in on_gpu["train"] + on_gpu["generate"], name
        assert machine.on_device(preset, "cpu") is preset
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "cross_entropy-seed1.json").write_text(json.dumps({"row": "cross_entropy"}))
    machine.check_device(str(tmp_path), "cpu")
    with pytest.raises(SystemExit) as refused:
        machine.check_device(str(tmp_path), "cuda")
    assert "--out" in str(refused.value.code) and "cpu" in str(refused.value.code)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        cli.main(["--preset", "multi30k-paper-transformer", "--device", "cuda", "--out", str(tmp_path / "gpu")])
    assert not (tmp_path / "gpu").exists()


def test_noisy_presets_offer_rows_on_data_of_their_own(tmp_path, capsys):
    """The clean ceiling and the overlap filter at each threshold train on data folders of their own; a preset
    without them refuses those rows in one line."""
    import argparse

    from l2t_fairseq.benchmark import cli, runner
    from l2t_fairseq.benchmark.presets import DATA_ROWS

    preset = PRESETS["multi30k-untranslated"]
    assert set(preset["row_data"]) == set(DATA_ROWS)
    assert "--filter-overlap" in preset["row_data"]["cross_entropy_filtered0.5"]["prepare"]
    args = argparse.Namespace(out=str(tmp_path), threads=1, jobs=1, data="runs/multi30k-untranslated/bin",
                              l2t_flags="")
    benchmark = runner.Benchmark(args, preset)
    assert benchmark.data("cross_entropy") == args.data
    assert benchmark.data("cross_entropy_clean") == PRESETS["multi30k"]["data"]
    with pytest.raises(SystemExit):
        cli.main(["--preset", "multi30k", "--rows", "cross_entropy", "cross_entropy_clean", "--out", str(tmp_path)])
    assert "the preset multi30k has no data of their own for them" in capsys.readouterr().err


def test_a_row_on_data_of_its_own_keeps_its_own_test_sources_and_references(tmp_path, monkeypatch):
    """The shared ``source.txt`` and ``reference.txt`` stay those of the preset's data whichever row finishes
    last: a row on data of its own (another vocabulary, other ``<unk>``) keeps its own, and its copy rate reads
    them."""
    import argparse

    from l2t_fairseq.benchmark import runner
    from l2t_fairseq.benchmark.report import copy_rates

    args = argparse.Namespace(out=str(tmp_path), threads=1, jobs=1, data="runs/multi30k-untranslated/bin",
                              l2t_flags="")
    benchmark = runner.Benchmark(args, PRESETS["multi30k-untranslated"])
    sides = {args.data: ("ein hund läuft .", "a dog runs ."),
             PRESETS["multi30k"]["data"]: ("zwei <unk> schlafen .", "a <unk> runs .")}
    monkeypatch.setattr(runner, "decode_test_set",
                        lambda data, *_, **__: (["ein hund läuft ."], [sides[data][1]], [sides[data][0]], 1.0))
    monkeypatch.setattr(benchmark, "searched", lambda row, seed: None)
    monkeypatch.setattr(benchmark, "train", lambda row, seed, done: ({"row": row, "pairing": {}}, str(tmp_path)))
    for row in ("cross_entropy", "cross_entropy_clean"):  # the row on its own data last
        benchmark.run(row, 1, {})
    records = tmp_path / "records"
    assert (records / "source.txt").read_text() == "ein hund läuft .\n"
    assert (records / "reference.txt").read_text() == "a dog runs .\n"
    assert (records / "cross_entropy_clean.source.txt").read_text() == "zwei <unk> schlafen .\n"
    assert (records / "cross_entropy_clean.reference.txt").read_text() == "a <unk> runs .\n"
    assert copy_rates(str(records), "cross_entropy", [1]) == [1.0]
    assert copy_rates(str(records), "cross_entropy_clean", [1]) == [0.0]  # its output copies another source


def test_the_filter_whose_threshold_dev_bleu_chose_is_a_bar_for_the_teacher():
    from l2t_fairseq.benchmark.verdict import FILTER_CHECK, filter_choice, verdict

    def s(dev, test):
        return {"best_dev_bleu": [dev, 0.0], "test_bleu": [test, 0.1], "seeds": [1, 2, 3]}

    summary = {"cross_entropy": s(30.0, 30.0), "cross_entropy_filtered0.3": s(31.0, 33.0),
               "cross_entropy_filtered0.5": s(32.0, 31.0),
               "l2t_dlf": {**s(31.0, 32.0), "gap_to_ce": 2.0, "paired_seeds": [1, 2, 3],
                           "paired_bootstrap_p": [0.01] * 3, "gap_per_seed": [2.0] * 3}}
    runs = {str(seed): {row: {"test_bleu": summary[row]["test_bleu"][0],
                              "best_dev_bleu": summary[row]["best_dev_bleu"][0]} for row in summary}
            for seed in (1, 2, 3)}
    assert filter_choice(runs)["chosen"] == "cross_entropy_filtered0.5"  # by dev BLEU, not by test
    v = verdict(summary, runs)["l2t_dlf"]
    assert v["margins"]["filter"] == 1.0 and v["checks"][FILTER_CHECK] is True
    assert filter_choice({"1": {"cross_entropy": runs["1"]["cross_entropy"]}}) == {}
    # one threshold run on more seeds than the other is compared on the seeds both have: 0.3 on seed 1 alone
    # (dev 33.0) against 0.5 on seeds 1 (32.0) and 2 (36.0) chooses 0.3, where the means over each one's seeds
    # (33.0 against 34.0) would choose 0.5
    runs = {"1": {"cross_entropy_filtered0.3": {"best_dev_bleu": 33.0},
                  "cross_entropy_filtered0.5": {"best_dev_bleu": 32.0}},
            "2": {"cross_entropy_filtered0.5": {"best_dev_bleu": 36.0}}}
    assert filter_choice(runs) == {"seeds": ["1"], "chosen": "cross_entropy_filtered0.3",
                                   "dev": {"cross_entropy_filtered0.3": 33.0, "cross_entropy_filtered0.5": 32.0}}
