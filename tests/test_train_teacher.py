"""l2t-train-teacher: one teacher, and its Adam state, carried across fresh students; resumable."""

import json
import os
import shutil

import pytest
import torch
from conftest import run

from l2t_fairseq.errors import UsageError
from l2t_fairseq.teacher.coefficients import DEV_BLEU_MEASURES
from l2t_fairseq.teacher.file import CHECKPOINT_KEY, load_teacher_state, save_teacher_file
from l2t_fairseq.train_teacher import improving

FLAGS = ["--arch", "transformer_l2t_toy", "--optimizer", "adam", "--lr", "2e-3", "--lr-scheduler", "inverse_sqrt",
         "--warmup-updates", "100", "--max-tokens", "2000", "--max-update", "21", "--teacher-interval", "10",
         "--unroll-steps", "2", "--no-lookahead-gain", "--eval-bleu", "--eval-bleu-args", '{"beam": 1}',
         "--eval-tokenized-bleu", "--no-epoch-checkpoints", "--log-format", "simple", "--cpu"]


def adam_steps(path):
    saved = torch.load(path, map_location="cpu")["extra_state"][CHECKPOINT_KEY]
    return {int(s["step"]) for s in saved["teacher_optimizer"]["state"].values()}


def test_a_teacher_trained_across_students(toy_data, tmp_path):
    out, runs = tmp_path / "teacher", tmp_path / "runs"
    command = ["l2t-train-teacher", toy_data, "--out", out, "--runs", runs, "--students", "3", "--patience", "5",
               *FLAGS]
    first = run(*command)
    records = json.loads((out / "students.json").read_text())
    assert [(r["student"], r["seed"]) for r in records] == [(1, 101), (2, 102), (3, 103)]
    # two teacher steps per student (updates 10 and 20); the Adam state goes on counting across students
    assert [r["teacher_adam_steps"] for r in records] == [2, 4, 6]
    assert all(len(r["dev_expected_bleu"]) == 2 and r["best_dev_bleu"] is not None for r in records)
    assert adam_steps(out / "teacher.pt") == {6}
    assert (out / "teacher_best.pt").is_file() and (out / "teacher_training.png").stat().st_size > 0
    assert "--continue-teacher" in records[1]["command"] and "--teacher-path" not in records[0]["command"]
    assert f"--save-dir {runs / 'student-1'}" in records[0]["command"] and not (out / "student-1").exists()
    assert "student 3 (seed 103)" in first.stdout

    # resumed on another machine, with --out alone: recorded students are not trained again; the student cut
    # off (no record, no training folder) is trained afresh from the last recorded teacher
    (out / "students.json").write_text(json.dumps(records[:2]))
    shutil.rmtree(runs)
    again = run(*command)
    assert "student 1: recorded" in again.stdout and "student 2: recorded" in again.stdout
    redone = json.loads((out / "students.json").read_text())
    assert [r["teacher_adam_steps"] for r in redone] == [2, 4, 6]
    assert redone[2]["dev_expected_bleu"] == records[2]["dev_expected_bleu"]  # the same run again


def test_a_student_cut_off_goes_on_from_its_last_checkpoint(toy_data, tmp_path):
    """The second student cut off after its checkpoint of update 7 (first epoch: 10 batches) and the command run
    again: it resumes there, with the teacher and Adam state of that checkpoint (not the previous student's), and
    ends as the uninterrupted run did."""
    flags = [*FLAGS, "--save-interval-updates", "7", "--keep-interval-updates", "5", "--log-interval", "1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    run("l2t-train-teacher", toy_data, "--out", whole, "--students", "2", "--patience", "5", *flags)
    records = json.loads((whole / "students.json").read_text())
    shutil.copytree(whole, cut)
    (cut / "students.json").write_text(json.dumps(records[:1]))
    student = cut / "student-2"
    command = json.loads((student / "command.json").read_text())["command"]
    # the student's folder and files, as l2t-train-teacher in ``cut`` would have written them
    command = [str(word).replace(str(whole), str(cut)) for word in command]
    (student / "command.json").write_text(json.dumps({"command": command, "resumes": []}))
    shutil.copy(student / "checkpoint_1_7.pt", student / "checkpoint_last.pt")
    log = (student / "train.log").read_text()
    (student / "train.log").write_text(log[:log.index("checkpoint_1_7.pt (epoch")])  # what it logged by then
    (student / "cpu.json").write_text(json.dumps({"cpu_seconds": 1000.0}))  # what the cut segment spent by then
    result = run("l2t-train-teacher", toy_data, "--out", cut, "--students", "2", "--patience", "5", *flags)
    assert "student 2: cut off, resumed at update 7" in result.stdout
    resumed = json.loads((cut / "students.json").read_text())[1]
    assert resumed["resumed_at"] == [7] and (student / "train.segment-1.log").is_file()
    # the cut segment costs its snapshot over the updates it logged (at most 7) times the 7 it kept, plus the last
    assert resumed["cpu_seconds"] > 1000, resumed["cpu_seconds"]
    for key in ("dev_bleu", "dev_expected_bleu", "teacher_adam_steps"):
        assert resumed[key] == records[1][key], key
    teachers = [torch.load(out / "teacher.pt", map_location="cpu")["extra_state"][CHECKPOINT_KEY]
                for out in (whole, cut)]
    for name, value in teachers[0]["teacher"].items():
        assert torch.equal(value, teachers[1]["teacher"][name]), name


def test_patience_stops_when_the_best_dev_bleu_stalls():
    def records(*bleu):
        return [{"best_dev_bleu": b} for b in bleu]

    assert improving(records(10), patience=1)
    assert improving(records(10, 11), patience=1)
    assert not improving(records(10, 11, 11), patience=1)  # a tie is no improvement
    assert improving(records(10, 11, 9), patience=2)
    assert not improving(records(10, 11, 9, 11), patience=2)


@pytest.mark.parametrize("flags, message", [
    (["--freeze-teacher"], "sets --freeze-teacher itself"),
    (["--max-update", "5"], "needs --eval-bleu"),
    (["--students", "0", "--eval-bleu"], "--students must be at least 1"),
])
def test_bad_flags(toy_data, tmp_path, flags, message):
    result = run("l2t-train-teacher", toy_data, "--out", tmp_path, *flags, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("l2t_fairseq: error: ") and message in last, result.stderr[-2000:]


@pytest.mark.parametrize("adam", [True, False])
def test_a_teacher_file_keeps_what_its_dev_bleu_measured(tmp_path, adam):
    """A teacher file saved from a run of either dev-BLEU measure is refused by a run of the other, either way; a
    file from before the measure was recorded is read under both."""
    old = os.path.join(os.path.dirname(__file__), "data", "written-before-layout", "teacher.pt")
    state = torch.load(old)["extra_state"][CHECKPOINT_KEY]
    vocab, keys = state["teacher"]["log_W"].shape

    def load(path, measure):
        return load_teacher_state(str(path), vocab, keys, "exp", measure)

    for saved in DEV_BLEU_MEASURES.values():
        path = tmp_path / "teacher.pt"
        save_teacher_file({**state, "dev_bleu_measure": saved}, str(path), adam)
        for measure in DEV_BLEU_MEASURES.values():
            if measure == saved:
                teacher, _ = load(path, measure)
                assert torch.equal(teacher["log_W"], state["teacher"]["log_W"])
            else:
                with pytest.raises(UsageError, match="--teacher-path .* read dev BLEU as the"):
                    load(path, measure)
    unrecorded = {k: v for k, v in state.items() if k != "dev_bleu_measure"}
    save_teacher_file(unrecorded, str(tmp_path / "old.pt"), adam)
    for measure in DEV_BLEU_MEASURES.values():
        assert load(tmp_path / "old.pt", measure)[0].keys() == state["teacher"].keys()
