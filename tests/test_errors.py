"""Bad input gets one clear line naming the flag or file, not a traceback."""

import pytest

from conftest import l2t_train, preprocess


def assert_one_line_error(result, *expected):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("l2t_fairseq: error:")]
    assert len(lines) == 1, result.stderr[-3000:]
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--unroll-steps", "0"), ("--teacher-interval", "0"), ("--teacher-keys", "0"), ("--unroll-lr", "-1"),
        ("--teacher-candidates", "0"), ("--teacher-alpha", "0"),
    ],
)
def test_bad_values(toy_data, tmp_path, flag, value):
    result = l2t_train(toy_data, tmp_path, "--max-update", "5", flag, value, check=False)
    assert_one_line_error(result, flag, value)


def test_missing_teacher_path(toy_data, tmp_path):
    missing = tmp_path / "nowhere.pt"
    result = l2t_train(toy_data, tmp_path, "--max-update", "5", "--teacher-path", missing, check=False)
    assert_one_line_error(result, "--teacher-path", str(missing), "no such file")


def test_teacher_for_another_dictionary(toy_corpus, trained, tmp_path):
    save_dir, _ = trained
    smaller = preprocess(toy_corpus, tmp_path / "bin", "--nwordstgt", "20")
    result = l2t_train(
        smaller, tmp_path, "--max-update", "5", "--teacher-path", save_dir / "checkpoint_last.pt", check=False
    )
    assert_one_line_error(result, "--teacher-path", "target dictionary")


def test_other_criterion(toy_data, tmp_path):
    result = l2t_train(toy_data, tmp_path, "--max-update", "5", "--criterion", "cross_entropy", check=False)
    assert_one_line_error(result, "--criterion l2t_dlf")


def test_momentum_is_a_choice_of_the_adam_unroll(toy_data, tmp_path):
    result = l2t_train(
        toy_data, tmp_path, "--max-update", "5", "--unroll-optimizer", "sgd", "--no-unroll-momentum", check=False
    )
    assert_one_line_error(result, "--no-unroll-momentum", "--unroll-optimizer sgd")


def test_adam_unroll_needs_an_adam_student(toy_data, tmp_path):
    result = l2t_train(
        toy_data, tmp_path, "--max-update", "3", "--teacher-interval", "2", "--unroll-steps", "1",
        "--unroll-optimizer", "adam", "--optimizer", "sgd", check=False,
    )
    assert_one_line_error(result, "--unroll-optimizer adam", "--optimizer adam")


def test_teacher_of_another_parametrization(trained, toy_data, tmp_path):
    save_dir, _ = trained
    result = l2t_train(
        toy_data, tmp_path, "--max-update", "5", "--teacher-path", save_dir / "checkpoint_last.pt",
        "--teacher-parametrization", "linear", check=False,
    )
    assert_one_line_error(result, "--teacher-path", "--teacher-parametrization exp", "this run has linear")
