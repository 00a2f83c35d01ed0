"""Bad input gets one clear line naming the flag or file, at start-up, before the first update."""

import pytest
from conftest import l2t_flags, preprocess, train_in_process


def start_up_error(monkeypatch, data, save_dir, *flags):
    """The one-line error fairseq-train stops with (in this process); it must come before any update."""
    with pytest.raises(SystemExit) as stopped:
        train_in_process(monkeypatch, *l2t_flags(data, save_dir, "--max-update", "5", *flags))
    message = str(stopped.value.code)
    assert message.startswith("l2t_fairseq: error: ") and "\n" not in message, message
    assert not (save_dir / "checkpoint_last.pt").exists(), "the error came after training"
    return message


def assert_names(message, *expected):
    for text in expected:
        assert text in message, message


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--unroll-steps", "0"), ("--teacher-interval", "0"), ("--teacher-keys", "0"), ("--unroll-lr", "-1"),
        ("--teacher-candidates", "0"), ("--teacher-alpha", "0"), ("--nll-weight", "2"), ("--teacher-replays", "0"),
        ("--unroll-keep-every", "-1"), ("--phi-init", "0"),
    ],
)
def test_bad_values(toy_data, tmp_path, monkeypatch, flag, value):
    extra = ["--unroll-optimizer", "sgd"] if flag == "--unroll-lr" else []
    assert_names(start_up_error(monkeypatch, toy_data, tmp_path, flag, value, *extra), flag, value)


def test_missing_teacher_path(toy_data, tmp_path, monkeypatch):
    missing = tmp_path / "nowhere.pt"
    message = start_up_error(monkeypatch, toy_data, tmp_path, "--teacher-path", missing)
    assert_names(message, "--teacher-path", str(missing), "no such file")


def test_teacher_for_another_dictionary(toy_corpus, trained, tmp_path, monkeypatch):
    save_dir, _ = trained
    smaller = preprocess(toy_corpus, tmp_path / "bin", "--nwordstgt", "20")
    message = start_up_error(monkeypatch, smaller, tmp_path, "--teacher-path", save_dir / "checkpoint_last.pt")
    assert_names(message, "--teacher-path", "target dictionary")


def test_other_criterion(toy_data, tmp_path, monkeypatch):
    assert_names(start_up_error(monkeypatch, toy_data, tmp_path, "--criterion", "cross_entropy"), "--criterion l2t_dlf")


def test_momentum_is_a_choice_of_the_adam_unroll(toy_data, tmp_path, monkeypatch):
    message = start_up_error(monkeypatch, toy_data, tmp_path, "--unroll-optimizer", "sgd", "--no-unroll-momentum")
    assert_names(message, "--no-unroll-momentum", "--unroll-optimizer sgd")


def test_unroll_lr_is_a_choice_of_the_sgd_unroll(toy_data, tmp_path, monkeypatch):
    message = start_up_error(monkeypatch, toy_data, tmp_path, "--unroll-optimizer", "adam", "--unroll-lr", "0.1")
    assert_names(message, "--unroll-lr", "--unroll-optimizer adam")


@pytest.mark.parametrize("optimizer, choice", [("sgd", "adam"), ("adagrad", "auto")])
def test_an_unroll_that_cannot_replay_the_student(toy_data, tmp_path, monkeypatch, optimizer, choice):
    """Refused before the first update, although the first teacher update would come only at update 100."""
    message = start_up_error(
        monkeypatch, toy_data, tmp_path, "--unroll-optimizer", choice, "--optimizer", optimizer,
        "--lr-scheduler", "fixed",
    )
    assert_names(message, f"--unroll-optimizer {choice}")


def test_teacher_of_another_parametrization(trained, toy_data, tmp_path, monkeypatch):
    save_dir, _ = trained
    message = start_up_error(
        monkeypatch, toy_data, tmp_path, "--teacher-path", save_dir / "checkpoint_last.pt",
        "--teacher-parametrization", "linear",
    )
    assert_names(message, "--teacher-path", "--teacher-parametrization exp", "this run has linear")



def test_a_past_window_longer_than_the_interval(toy_data, tmp_path, monkeypatch):
    message = start_up_error(
        monkeypatch, toy_data, tmp_path, "--unroll-start", "past", "--unroll-steps", "20", "--teacher-interval", "10"
    )
    assert_names(message, "--unroll-start past", "--unroll-steps (20)", "--teacher-interval (10)")
