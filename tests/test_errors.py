"""Bad input gets one clear line naming the flag or file, at start-up, before the first update."""

import datetime
import subprocess
import sys

import pytest
import torch
from conftest import REPO, l2t_flags, preprocess, train_in_process


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


@pytest.mark.parametrize("content", ["text", "foreign object", "tensor"])
def test_a_teacher_path_that_is_no_checkpoint(toy_data, tmp_path, monkeypatch, content):
    """A text file, a pickle of an object a checkpoint never holds (torch's refusal comes with six lines of advice
    on untrusted files), a file of a bare tensor: one line each, naming the file."""
    path = tmp_path / "teacher.pt"
    if content == "text":
        path.write_text("not a checkpoint\n")
    else:
        torch.save({"made": datetime.date(2026, 1, 1)} if content == "foreign object" else torch.ones(2), path)
    message = start_up_error(monkeypatch, toy_data, tmp_path / "run", "--teacher-path", path)
    assert_names(message, "--teacher-path", str(path), "not an l2t_translation checkpoint")
    if content == "foreign object":
        assert_names(message, "datetime.date")


def test_dev_batches_smaller_than_a_dev_sentence(toy_data, tmp_path, monkeypatch):
    """fairseq's batching would fail an assertion at the first refresh (58 lines)."""
    message = start_up_error(monkeypatch, toy_data, tmp_path, "--teacher-dev-max-tokens", "4")
    assert_names(message, "--teacher-dev-max-tokens 4", "valid subset", "tokens")


def test_teacher_for_another_dictionary(toy_corpus, trained, tmp_path, monkeypatch):
    save_dir, _ = trained
    smaller = preprocess(toy_corpus, tmp_path / "bin", "--nwordstgt", "20")
    message = start_up_error(monkeypatch, smaller, tmp_path, "--teacher-path", save_dir / "checkpoint_last.pt")
    assert_names(message, "--teacher-path", "target dictionary")


def test_other_criterion(toy_data, tmp_path, monkeypatch):
    assert_names(start_up_error(monkeypatch, toy_data, tmp_path, "--criterion", "cross_entropy"), "--criterion l2t_dlf")


def test_the_criterion_without_its_task(toy_data, tmp_path, monkeypatch):
    """The criterion takes its coefficients from what the task hands it, never from the task: fairseq's translation
    task hands it none."""
    message = start_up_error(monkeypatch, toy_data, tmp_path, "--task", "translation")
    assert_names(message, "--criterion l2t_dlf needs --task l2t_translation")


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


def test_fp16_on_the_cpu(toy_data, tmp_path, monkeypatch):
    """fairseq's flat fp16 buffer is CUDA-only (test_mixed_precision.py trains fp16 on the CPU without it)."""
    assert_names(start_up_error(monkeypatch, toy_data, tmp_path, "--fp16"), "--fp16", "--cpu",
                 "--fp16-no-flatten-grads")


@pytest.mark.parametrize("content", [b"not a checkpoint at all", "truncated"])
def test_a_broken_restore_file(toy_data, trained, tmp_path, monkeypatch, content):
    broken = tmp_path / "broken.pt"
    if content == "truncated":
        whole = (trained[0] / "checkpoint_last.pt").read_bytes()
        content = whole[: len(whole) // 2]
    broken.write_bytes(content)
    message = start_up_error(monkeypatch, toy_data, tmp_path / "save", "--restore-file", broken)
    assert_names(message, "--restore-file", str(broken), "not a whole fairseq checkpoint")


def test_a_data_directory_that_does_not_exist(tmp_path, monkeypatch):
    missing = tmp_path / "no-data"
    assert_names(start_up_error(monkeypatch, missing, tmp_path), "DATA", str(missing), "no such directory")


def test_a_teacher_that_read_another_dev_bleu(trained, toy_data, tmp_path, monkeypatch):
    """The trained teacher read fairseq's --eval-bleu validation as its dev-BLEU feature; a run without --eval-bleu
    would feed it the teacher's own one-batch BLEU instead."""
    save_dir, _ = trained
    message = start_up_error(
        monkeypatch, toy_data, tmp_path, "--teacher-path", save_dir / "checkpoint_last.pt", "--freeze-teacher"
    )
    assert_names(message, "--teacher-path", "--eval-bleu")


def test_a_frozen_teacher_without_a_teacher_path_is_named(toy_data, tmp_path, monkeypatch, caplog):
    train_in_process(monkeypatch, *l2t_flags(toy_data, tmp_path, "--max-update", "2", "--freeze-teacher",
                                             "--disable-validation", "--no-save"))
    warnings = [r.getMessage() for r in caplog.records if "--freeze-teacher" in r.getMessage()]
    assert len(warnings) == 1 and "--teacher-path" in warnings[0] and "\n" not in warnings[0], warnings


def test_the_plugin_without_fairseq_says_what_to_install():
    for code in ("import l2t_fairseq", "from l2t_fairseq.benchmark import cli"):
        result = subprocess.run([sys.executable, "-c", f"import sys; sys.modules['fairseq'] = None; {code}"],
                                capture_output=True, text=True)
        assert result.returncode == 1 and result.stdout == "", result
        assert result.stderr.count("\n") == 1 and "pip install --no-deps fairseq-fixed" in result.stderr, result.stderr


@pytest.mark.parametrize("module, code, package", [
    ("sklearn", "import l2t_fairseq", "scikit-learn"),  # fairseq's own import needs it
    ("matplotlib", "from l2t_fairseq.benchmark import cli", "matplotlib"),
    ("PIL", "from l2t_fairseq import train_teacher", "Pillow"),
])
def test_a_missing_module_is_named_with_its_pip_name(module, code, package):
    """fairseq is installed but a module it or the commands import is not: one line names that module, not
    fairseq."""
    result = subprocess.run([sys.executable, "-c", f"import sys; sys.modules[{module!r}] = None; {code}"],
                            capture_output=True, text=True)
    line = result.stderr.splitlines()[-1]  # after fairseq's own log line about tensorboardX, where it got that far
    assert result.returncode == 1 and "Traceback" not in result.stderr and line.startswith("l2t_fairseq: error: ")
    assert f"needs the module {module}," in line and f"pip install {package} " in line, line
    assert "fairseq is not installed" not in line


@pytest.mark.parametrize("missing", ["results.json", "training data"])
def test_plots_of_a_folder_without_results(tmp_path, missing):
    """``l2t-plots OUT DATA``: an OUT that l2t-benchmark did not write, or a DATA without binarized training data,
    in one line naming the folder."""
    out, data = tmp_path / "out", tmp_path / "data"
    out.mkdir()
    data.mkdir()
    if missing == "training data":
        (out / "results.json").write_text('{"runs": {}}')
    result = subprocess.run([sys.executable, "-m", "l2t_fairseq.benchmark.plots", str(out), str(data)],
                            capture_output=True, text=True, cwd=REPO)
    line = result.stderr.splitlines()[-1]
    assert result.returncode == 1 and "Traceback" not in result.stderr and line.startswith("l2t_fairseq: error: ")
    assert_names(line, str(out) if missing == "results.json" else str(data), missing.split()[-1])
