"""fairseq-train with the plugin, resume, reuse of a frozen teacher, fairseq-generate."""

import json
import re
import shutil
import sys

import torch

from conftest import PLUGIN, TEACHER_INTERVAL, TRAINED_UPDATES, l2t_train, run, teacher_state, teacher_weights


def teacher_log(save_dir):
    with open(save_dir / "teacher.jsonl") as f:
        return [json.loads(line) for line in f]


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
    for r in records:
        assert 0 <= r["dev_expected_bleu"] <= 1 and r["hypergrad_norm"] > 0
        # M~ after the step minus before, on the same batches and candidates: small, finite, not exactly 0
        assert r["lookahead_gain"] != 0 and abs(r["lookahead_gain"]) < 1
        seen = sum(band["words"] for band in r["phi_bands"].values())
        assert list(r["phi_bands"]) == ["1-100"] and 0 < seen < len(r["phi"])  # toy: fewer than 100 target words
        band = r["phi_bands"]["1-100"]
        assert band["min"] <= band["mean"] <= band["max"] and band["max"] <= max(r["phi"]) + 1e-5
        assert all(0 <= s <= 1 for s in r["state"]) and len(r["phi"]) == teacher_weights(state["teacher"])[0].size(0)
    assert records[-1]["dev_expected_bleu"] > records[0]["dev_expected_bleu"], "the student did not improve on dev"
    W, start = teacher_weights(state["teacher"])
    assert not torch.allclose(W, start), "the teacher never moved"
    steps = {int(s["step"]) for s in state["teacher_optimizer"]["state"].values()}
    assert steps == {teacher_updates}
    progress, train_bleu, dev_bleu = state["student_state"].tolist()
    assert 0 < progress <= 1 and 0 < train_bleu <= 1 and 0 < dev_bleu <= 1


def test_resume_restores_the_teacher_exactly(toy_data, trained, tmp_path):
    save_dir, _ = trained
    shutil.copy(save_dir / "checkpoint_last.pt", tmp_path / "checkpoint_last.pt")
    before = teacher_state(tmp_path / "checkpoint_last.pt")
    # 20 more updates; the next teacher update would be at 350, so the teacher must come back unchanged
    result = l2t_train(
        toy_data, tmp_path, "--max-update", TRAINED_UPDATES + 20,
        "--teacher-interval", TEACHER_INTERVAL, "--unroll-steps", "3",
    )
    assert f"Loaded checkpoint {tmp_path}/checkpoint_last.pt" in result.stdout
    # without --eval-bleu the dev BLEU feature comes from greedy decoding of a dev batch every K updates
    (refresh,) = teacher_log(tmp_path)
    assert refresh["update"] == TRAINED_UPDATES and "dev_expected_bleu" not in refresh  # U batches not yet seen
    assert refresh["state"][2] > 0.5 and refresh["state"][2] != before["student_state"][2].item()
    after = teacher_state(tmp_path / "checkpoint_last.pt")
    assert set(after["teacher"]) == set(before["teacher"])
    for name in before["teacher"]:
        assert torch.equal(before["teacher"][name], after["teacher"][name]), name
    for index, moments in before["teacher_optimizer"]["state"].items():
        for key, value in moments.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(after["teacher_optimizer"]["state"][index][key]))


def test_frozen_teacher_teaches_a_new_student(toy_data, trained, tmp_path):
    save_dir, _ = trained
    result = l2t_train(
        toy_data, tmp_path, "--max-update", 60, "--teacher-interval", 20,
        "--teacher-path", save_dir / "checkpoint_last.pt", "--freeze-teacher",
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

    from l2t_fairseq.expected_bleu import DevExpectedBleu

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


def test_adam_unroll_with_relative_positive_coefficients(toy_data, tmp_path):
    """--unroll-optimizer adam --teacher-parametrization exp --phi-normalization token_mean."""
    l2t_train(
        toy_data, tmp_path, "--max-update", 31, "--teacher-interval", 10, "--unroll-steps", 3,
        "--unroll-optimizer", "adam", "--teacher-parametrization", "exp",
        "--phi-normalization", "token_mean", "--teacher-lr", "0.05",
    )
    records = teacher_log(tmp_path)
    assert [r["update"] for r in records] == [10, 20, 30]
    assert all(r["hypergrad_norm"] > 0 and r["lookahead_gain"] != 0 for r in records)
    assert all(min(r["phi"]) > 0 for r in records)
    state = teacher_state(tmp_path / "checkpoint_last.pt")["teacher"]
    assert set(state) == {"log_W", "V"}
    assert state["log_W"].std() > 0.01  # a relative lr of 0.05: three steps move log W visibly
