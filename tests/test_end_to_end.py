"""fairseq-train with the plugin, resume, reuse of a frozen teacher, fairseq-generate."""

import re
import shutil
import sys

import numpy as np
import pytest
import torch
from conftest import PLUGIN, TEACHER_INTERVAL, TRAINED_UPDATES, l2t_train, run, teacher_state, teacher_weights
from fairseq import checkpoint_utils

from l2t_fairseq import teacher_log as teacher_log_file


def teacher_log(save_dir):
    return teacher_log_file.read(save_dir / "teacher.jsonl")


def valid_values(log, key):
    return [float(v) for v in re.findall(rf"valid on 'valid' subset \|.*?\| {key} ([-\d.]+)", log)]


def test_training_improves_dev_loss_and_trains_the_teacher(trained):
    save_dir, log = trained
    nll = valid_values(log, "nll_loss")
    assert len(nll) >= 5
    assert nll[-1] < 0.5 * nll[0], nll
    teacher_updates = (TRAINED_UPDATES - 1) // TEACHER_INTERVAL
    state = teacher_state(save_dir / "checkpoint_last.pt")
    assert "teacher_dev_expected_bleu" in log and "teacher_hypergrad_norm" in log
    records = teacher_log(save_dir)
    assert [r["update"] for r in records] == [TEACHER_INTERVAL * (i + 1) for i in range(teacher_updates)]
    phis = dict((r["update"], phi) for r, phi in teacher_log_file.coefficients(str(save_dir / "teacher.jsonl")))
    assert list(phis) == [r["update"] for r in records if "phi_row" in r] and records[0]["update"] in phis
    for r in records:
        assert 0 <= r["dev_expected_bleu"] <= 1 and r["hypergrad_norm"] > 0
        # M~ after the step minus before, on the same batches and candidates: small, finite, not exactly 0
        assert r["lookahead_gain"] != 0 and abs(r["lookahead_gain"]) < 1
        band = r["phi_bands"]["1-100"]
        assert list(r["phi_bands"]) == ["1-100"] and band["min"] <= band["mean"] <= band["max"]
        assert r["phi_digest"]["largest"][0][1] >= band["max"] - 1e-5 and all(0 <= s <= 1 for s in r["state"])
        if r["update"] in phis:  # toy: fewer than 100 target words, the largest coefficient among them or others
            phi = phis[r["update"]]
            assert 0 < band["words"] < len(phi) == teacher_weights(state["teacher"])[0].size(0)
            assert abs(max(phi) - r["phi_digest"]["largest"][0][1]) < 1e-3
    assert records[-1]["dev_expected_bleu"] > records[0]["dev_expected_bleu"], "the student did not improve on dev"
    W, start = teacher_weights(state["teacher"])
    assert not torch.allclose(W, start), "the teacher never moved"
    steps = {int(s["step"]) for s in state["teacher_optimizer"]["state"].values()}
    assert steps == {teacher_updates}
    progress, train_bleu, dev_bleu = state["student_state"].tolist()
    assert 0 < progress <= 1 and 0 < train_bleu <= 1 and 0 < dev_bleu <= 1


RESUME_FLAGS = ("--max-update", 27, "--teacher-interval", 5, "--disable-validation")


# past: the checkpoint falls inside a window (opened at update 6 for the refresh at 10), which must be saved
@pytest.mark.parametrize("start, steps", [("current", 3), ("past", 4)])
def test_a_resumed_run_ends_as_an_uninterrupted_one(toy_data, tmp_path, start, steps):
    """Stopped at update 7 (between two refreshes, the replay buffer partly older than the checkpoint) and
    resumed: the same teacher, teacher.jsonl (minus timings) and student, bit for bit, as a run that never stopped.

    The checkpoint is in the first epoch (10 batches): fairseq itself redraws the batches of a later epoch
    resumed in its middle (cross-entropy too), so no run resumed there can match one that was not.
    """
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    flags = (*RESUME_FLAGS, "--unroll-start", start, "--unroll-steps", steps)
    l2t_train(toy_data, whole, *flags, "--save-interval-updates", 7, "--keep-interval-updates", 5)
    # as if stopped after its checkpoint of update 7, with a teacher.jsonl that went on to the end
    resumed.mkdir()
    shutil.copy(whole / "checkpoint_1_7.pt", resumed / "checkpoint_last.pt")
    shutil.copy(whole / "teacher.jsonl", resumed / "teacher.jsonl")
    shutil.copy(whole / "teacher_phi.npy", resumed / "teacher_phi.npy")
    result = l2t_train(toy_data, resumed, *flags)
    assert f"Loaded checkpoint {resumed}/checkpoint_last.pt" in result.stdout

    def timeless(save_dir):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in teacher_log(save_dir)]

    # the records logged after the checkpoint are not doubled
    assert [r["update"] for r in timeless(resumed)] == [5, 10, 15, 20, 25]
    assert timeless(resumed) == timeless(whole)
    phis = [teacher_log_file.read_phi(str(d / "teacher.jsonl")) for d in (whole, resumed)]
    assert phis[0].shape[0] == 2 and np.array_equal(*phis)  # refreshes 1 and the last (--phi-log-every 10)
    ends = [checkpoint_utils.load_checkpoint_to_cpu(str(d / "checkpoint_last.pt")) for d in (whole, resumed)]
    for name, value in ends[0]["model"].items():
        assert torch.equal(value, ends[1]["model"][name]), name
    teachers = [end["extra_state"]["L2TTranslationTask"] for end in ends]
    for name, value in teachers[0]["teacher"].items():
        assert torch.equal(value, teachers[1]["teacher"][name]), name
    moments = [t["teacher_optimizer"]["state"] for t in teachers]
    for index, by_key in moments[0].items():
        for key, value in by_key.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(moments[1][index][key])), (index, key)


def test_frozen_teacher_teaches_a_new_student(toy_data, trained, tmp_path):
    save_dir, _ = trained
    result = l2t_train(
        toy_data, tmp_path, "--max-update", 60, "--teacher-interval", 20,
        "--teacher-path", save_dir / "checkpoint_last.pt", "--freeze-teacher",
        # as the teacher was trained: its dev-BLEU feature is fairseq's validation BLEU
        "--eval-bleu", "--eval-bleu-args", '{"beam": 1}', "--eval-tokenized-bleu",
    )
    assert "teacher loaded from" in result.stdout
    assert "teacher_dev_expected_bleu" not in result.stdout
    loaded = teacher_state(save_dir / "checkpoint_last.pt")["teacher"]
    used = teacher_state(tmp_path / "checkpoint_last.pt")["teacher"]
    assert set(used) == set(loaded)
    for name in loaded:
        assert torch.equal(loaded[name], used[name]), name


def test_lstm_student_trains_with_teacher_updates(toy_data, tmp_path):
    result = run(
        "fairseq-train", toy_data, "--user-dir", PLUGIN, "--task", "l2t_translation", "--criterion", "l2t_dlf",
        "--arch", "lstm", "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32",
        "--encoder-hidden-size", "32", "--decoder-embed-dim", "32", "--decoder-hidden-size", "32",
        "--decoder-out-embed-dim", "32", "--optimizer", "adam", "--lr", "3e-3", "--max-tokens", "2000",
        "--max-update", "30", "--teacher-interval", "10", "--unroll-steps", "2", "--save-dir", tmp_path,
        "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "10", "--cpu", "--seed", "1",
    )
    assert re.search(r"teacher_hypergrad_norm[ =][\d.e-]*[1-9]", result.stdout), result.stdout[-2000:]
    moments = teacher_state(tmp_path / "checkpoint_last.pt")["teacher_optimizer"]["state"]
    assert {int(m["step"]) for m in moments.values()} == {2}


def test_generate_decodes_the_trained_student(toy_data, trained):
    save_dir, _ = trained
    result = run(
        "fairseq-generate", toy_data, "--user-dir", PLUGIN, "--task", "l2t_translation",
        "--path", save_dir / "checkpoint_last.pt", "--gen-subset", "test", "--beam", "5", "--cpu",
        "--batch-size", "50",
    )
    bleu = re.search(r"BLEU4 = ([\d.]+)", result.stdout)
    assert bleu, result.stdout[-2000:]
    assert float(bleu.group(1)) > 20
    translated = int(re.search(r"Translated (\d+) sentences", result.stdout + result.stderr).group(1))
    assert translated >= 90
    assert len(re.findall(r"^H-\d+", result.stdout, re.M)) == translated



def test_a_non_finite_dev_objective_skips_teacher_steps(toy_data, tmp_path, monkeypatch):
    """fairseq-train in this process, with M~ poisoned: every teacher step is skipped and counted."""
    from fairseq_cli.train import cli_main

    from l2t_fairseq.dev_measure.expected_bleu import DevExpectedBleu

    def poisoned(self, params):
        value, grads = value_and_grad(self, params)
        return value * float("nan"), {name: g * float("inf") for name, g in grads.items()}

    value_and_grad = DevExpectedBleu.value_and_grad
    monkeypatch.setattr(DevExpectedBleu, "value_and_grad", poisoned)
    monkeypatch.setattr(sys, "argv", [
        "fairseq-train", str(toy_data), "--user-dir", PLUGIN, "--task", "l2t_translation", "--criterion", "l2t_dlf",
        "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "2e-3", "--max-tokens", "2000",
        "--max-update", "25", "--teacher-interval", "10", "--unroll-steps", "2", "--save-dir", str(tmp_path),
        "--no-epoch-checkpoints", "--log-format", "simple", "--cpu", "--seed", "1",
    ])
    cli_main()
    records = teacher_log(tmp_path)
    assert [(r["update"], r["skipped"], r["skipped_steps"]) for r in records] == [(10, True, 1), (20, True, 2)]
    assert all("hypergrad_norm" not in r and "dev_expected_bleu" not in r for r in records)
    state = teacher_state(tmp_path / "checkpoint_last.pt")
    assert state["skipped_steps"] == 2 and state["teacher_optimizer"]["state"] == {}  # Adam never stepped
    W, start = teacher_weights(state["teacher"])
    assert torch.equal(W, start)
    assert all(torch.isfinite(p).all() for p in state["teacher"].values())


def test_the_lookahead_gain_measured_less_often_leaves_the_teacher_as_it_was(toy_data, tmp_path):
    """--lookahead-gain-every 2 measures the diagnostic at refreshes 1 and 3; the held-out dev batch is still drawn
    at every refresh, so the teacher sees the same dev batches and ends bit for bit as when measured at each."""
    flags = ("--max-update", 21, "--teacher-interval", 5, "--unroll-steps", 3, "--disable-validation")
    l2t_train(toy_data, tmp_path / "each", *flags, "--lookahead-gain-every", 1)
    l2t_train(toy_data, tmp_path / "every2", *flags, "--lookahead-gain-every", 2)
    each, every2 = teacher_log(tmp_path / "each"), teacher_log(tmp_path / "every2")
    assert [r["update"] for r in each] == [5, 10, 15, 20] and all("lookahead_gain" in r for r in each)
    assert [r["update"] for r in every2 if "lookahead_gain" in r] == [5, 15]
    assert [r["teacher_digest"] for r in each] == [r["teacher_digest"] for r in every2]


def test_adam_unroll_with_relative_positive_coefficients(toy_data, tmp_path):
    """--unroll-optimizer adam --teacher-parametrization exp --phi-normalization token_mean."""
    l2t_train(
        toy_data, tmp_path, "--max-update", 31, "--teacher-interval", 10, "--unroll-steps", 3,
        "--unroll-optimizer", "adam", "--teacher-parametrization", "exp",
        "--phi-normalization", "token_mean", "--teacher-lr", "0.05", "--lookahead-gain-every", "1",
    )
    records = teacher_log(tmp_path)
    assert [r["update"] for r in records] == [10, 20, 30]
    assert all(r["hypergrad_norm"] > 0 and r["lookahead_gain"] != 0 for r in records)
    assert all(min(phi) > 0 for _, phi in teacher_log_file.coefficients(str(tmp_path / "teacher.jsonl")))
    state = teacher_state(tmp_path / "checkpoint_last.pt")["teacher"]
    assert set(state) == {"log_W", "V"}
    assert state["log_W"].std() > 0.01  # a relative lr of 0.05: three steps move log W visibly


def test_an_sgd_learning_rate_tuned_for_cross_entropy_fits_the_default_loss(toy_data, tmp_path):
    """Plain SGD at one learning rate: the default loss scale trains the student about as fast as cross-entropy
    (dev NLL after 10 updates); the paper's scale, about 1/(4 ln|V|) of it, barely moves it."""

    def dev_nll(name, *loss):
        result = run(
            "fairseq-train", toy_data, "--user-dir", PLUGIN, *loss, "--arch", "transformer_l2t_toy",
            "--optimizer", "sgd", "--lr", "0.5", "--lr-scheduler", "fixed", "--max-tokens", "2000",
            "--max-update", "10", "--save-dir", tmp_path / name, "--no-save", "--log-format", "simple", "--cpu",
            "--seed", "1",
        )
        key = "nll_loss" if "l2t_dlf" in loss else "loss"  # cross_entropy logs its NLL as loss
        return float(re.findall(rf"valid on 'valid' subset .*?\| {key} ([\d.]+)", result.stdout)[-1])

    l2t = ["--task", "l2t_translation", "--criterion", "l2t_dlf", "--teacher-interval", "1000"]
    cross_entropy = dev_nll("ce", "--task", "translation", "--criterion", "cross_entropy")
    default = dev_nll("default", *l2t)
    paper = dev_nll("paper", *l2t, "--loss-scale", "paper")
    assert abs(default - cross_entropy) < 0.2 and paper > cross_entropy + 0.3, (cross_entropy, default, paper)



def test_the_paper_protocol_trains_end_to_end(toy_data, tmp_path):
    """--unroll-start past with replayed windows and a checkpointed reverse loop, under plain SGD."""
    l2t_train(
        toy_data, tmp_path, "--max-update", 25, "--teacher-interval", 10, "--unroll-steps", 4, "--unroll-start",
        "past", "--teacher-replays", 3, "--unroll-keep-every", 2, "--optimizer", "sgd", "--lr", "0.5",
        "--lr-scheduler", "fixed",
    )
    records = teacher_log(tmp_path)
    assert [(r["update"], r["workers"]) for r in records] == [(10, 1), (20, 1)]
    for r in records:
        assert len(r["replays_dev_expected_bleu"]) == 3 and r["hypergrad_norm"] > 0 and not r["skipped"]
    state = teacher_state(tmp_path / "checkpoint_last.pt")
    assert {int(m["step"]) for m in state["teacher_optimizer"]["state"].values()} == {6}  # 2 refreshes x 3
