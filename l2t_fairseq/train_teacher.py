"""``l2t-train-teacher``: a teacher trained across students (Algorithm 1), then frozen for the paper's test phase.

    l2t-train-teacher DATA --out DIR [--runs DIR] --students 10 --patience 3 [fairseq-train flags ...]

Trains fresh students one after another (seeds ``--first-seed``, ``--first-seed + 1``, ...), each with
``fairseq-train DATA --task l2t_translation --criterion l2t_dlf FLAGS``; from the second on, the teacher
*and its Adam state* come from the previous student's run (``--teacher-path ... --continue-teacher``).
After each student it records the dev measure of every teacher step (``M~``) and the student's best dev
BLEU (its ``--eval-bleu`` validations), and stops when that BLEU has not improved for ``--patience``
students, or after ``--students``.  It writes ``DIR/teacher.pt`` (the teacher after the last student),
``DIR/teacher_best.pt`` (after the student with the best dev BLEU), ``DIR/students.json`` and
``DIR/teacher_training.png`` (the paper's Figure 3: the dev measure over teacher steps, across students).
Use the teacher with ``--teacher-path DIR/teacher.pt --freeze-teacher``.

Interrupted, the same command resumes: finished students are recorded (``students.json``) with the
teacher after them (``teacher-after-student-N.pt``), in ``--out``; the students' training folders go to
``--runs`` (default: ``--out``).  ``--out`` alone, a few small files, is what carries the training on to
another machine (the next student starts there from the last recorded teacher).  A student cut off goes on from
its last checkpoint
(student, teacher and its Adam state as saved there; its record says ``resumed_at``, and its CPU time sums its
segments', each from the snapshots it wrote while it trained); one cut off after its last update is trained again.
To start students from a cross-entropy checkpoint, as the authors' code does, pass
``--finetune-from-model CKPT`` among the fairseq-train flags.
"""

import argparse
import json
import os
import shutil
import sys

import torch

from l2t_fairseq import (
    checkpoints,  # noqa: F401 - lets torch.load read fairseq checkpoints (weights_only)
    commands,
    teacher_log,
)
from l2t_fairseq.benchmark.run_segments import (
    checkpoint_update,
    console_command,
    dev_bleu_curve,
    measured_segment,
    resume,
    saved_run,
    segments_of,
    start_afresh,
    whole_run_cpu,
)
from l2t_fairseq.errors import UsageError
from l2t_fairseq.figures import save_figure
from l2t_fairseq.teacher.file import CHECKPOINT_KEY, save_teacher_file
from l2t_fairseq.whole_files import write_whole

PLUGIN = os.path.dirname(os.path.abspath(__file__))
OWN_FLAGS = ("--task", "--criterion", "--seed", "--save-dir", "--teacher-path", "--continue-teacher",
             "--freeze-teacher")


def parse(argv):
    parser = argparse.ArgumentParser(
        prog="l2t-train-teacher", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="binarized data (fairseq-preprocess)")
    parser.add_argument("--out", required=True, help="the teacher files, students.json, the plot")
    parser.add_argument("--runs", help="the students' training folders (default: --out)")
    parser.add_argument("--students", type=int, default=10, help="at most this many students")
    parser.add_argument("--patience", type=int, default=3,
                        help="stop after this many students without a better best dev BLEU")
    parser.add_argument("--first-seed", type=int, default=101,
                        help="seed of the first student (keep them apart from a benchmark's test seeds)")
    args, flags = parser.parse_known_args(argv)
    for value, flag in ((args.students, "--students"), (args.patience, "--patience")):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    for flag in OWN_FLAGS:
        if flag in flags:
            raise UsageError(f"l2t-train-teacher sets {flag} itself; leave it out")
    if "--eval-bleu" not in flags:
        raise UsageError("l2t-train-teacher needs --eval-bleu (with --eval-bleu-remove-bpe for subword data): "
                         "the student's dev BLEU decides when the teacher stops improving")
    if not os.path.isdir(args.data) or not any(name.startswith("dict.") for name in os.listdir(args.data)):
        raise UsageError(f"{args.data}: no fairseq-preprocess dictionary (dict.*.txt)")
    return args, flags


def teacher_file(out, student):
    return os.path.join(out, f"teacher-after-student-{student}.pt")


def train_student(args, flags, student, records):
    """One fresh student with the teacher of the previous one (or the same student resumed where it was cut
    off); returns its record."""
    run_dir = os.path.join(args.runs or args.out, f"student-{student}")
    seed = args.first_seed + student - 1
    command = [*commands.command("fairseq-train"), args.data, "--user-dir", PLUGIN, "--task", "l2t_translation",
               "--criterion", "l2t_dlf", "--seed", str(seed), "--save-dir", run_dir, *flags]
    if records:
        command += ["--teacher-path", teacher_file(args.out, student - 1), "--continue-teacher"]
    resumes, earlier = resume_or_start(run_dir, command)
    if resumes:
        print(f"student {student}: cut off, resumed at update {resumes[-1]}", flush=True)
    wall, _, output, cpu = measured_segment(command, run_dir)
    saved = torch.load(os.path.join(run_dir, "checkpoint_last.pt"), map_location="cpu")["extra_state"][CHECKPOINT_KEY]
    save_teacher_file(saved, teacher_file(args.out, student))
    steps = teacher_log.read(os.path.join(run_dir, teacher_log.TEACHER_LOG))
    bleu = [b for _, b in dev_bleu_curve(earlier + output)]
    record = {
        "student": student, "seed": seed, "best_dev_bleu": max(bleu, default=None), "dev_bleu": bleu,
        "dev_expected_bleu": [r.get("dev_expected_bleu") for r in steps],
        "teacher_adam_steps": max((int(s["step"]) for s in saved["teacher_optimizer"]["state"].values()), default=0),
        "wall_seconds": wall, "cpu_seconds": cpu, "command": " ".join(command[1:]),
    }
    if resumes:  # the cut segments' CPU from their snapshots; wall time at the last segment's rate
        updates = checkpoint_update(os.path.join(run_dir, "checkpoint_last.pt"))
        record["wall_seconds"] *= updates / (updates - resumes[-1])
        record["cpu_seconds"] = whole_run_cpu(segments_of(run_dir), resumes, cpu, updates)
        record["resumed_at"] = resumes
    return record


def resume_or_start(run_dir, command):
    """The student's folder: of the same command cut off before its last update, kept for fairseq to resume
    from its last checkpoint; else made afresh.  Returns the updates it was resumed at so far and what its earlier
    segments logged (([], "") for a fresh start)."""
    saved, update = saved_run(run_dir)
    budget = int(command[command.index("--max-update") + 1]) if "--max-update" in command else None
    if saved and saved["command"] == command and budget is not None and update < budget:
        return resume(run_dir, saved, command, update)
    start_afresh(run_dir, command)  # cut off after its last update, or another command: afresh
    return [], ""


def improving(records, patience):
    """False once the best dev BLEU has not improved over the last ``patience`` students."""
    bleu = [r["best_dev_bleu"] if r["best_dev_bleu"] is not None else float("-inf") for r in records]
    best = max(range(len(bleu)), key=lambda i: (bleu[i], -i))
    return len(bleu) - 1 - best < patience


def plot(out, records):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5))
    step = 0
    for r in records:
        values = [v for v in r["dev_expected_bleu"] if v is not None]
        top.plot(range(step, step + len(values)), values, marker=".", label=f"student {r['student']}")
        step += len(values)
        top.axvline(step - 0.5, color="gray", linewidth=0.5)
    top.set_xlabel("teacher step (across students)")
    top.set_ylabel("M~ on the dev batch")
    top.set_title("The teacher's dev measure over its training (Figure 3)")
    bottom.plot([r["student"] for r in records], [r["best_dev_bleu"] for r in records], marker="o")
    bottom.set_xlabel("student")
    bottom.set_ylabel("best dev BLEU")
    fig.tight_layout()
    save_figure(fig, os.path.join(out, "teacher_training.png"))


def main(argv=None):
    args, flags = parse(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "students.json")
    records = json.load(open(path)) if os.path.isfile(path) else []
    for r in records:
        print(f"student {r['student']}: recorded (best dev BLEU {r['best_dev_bleu']}), skipped", flush=True)
    while len(records) < args.students and (not records or improving(records, args.patience)):
        records.append(train_student(args, flags, len(records) + 1, records))
        write_whole(path, json.dumps(records, indent=1))  # the student counts as finished only now
        r = records[-1]
        print(f"student {r['student']} (seed {r['seed']}): best dev BLEU {r['best_dev_bleu']}, "
              f"{r['teacher_adam_steps']} teacher steps so far", flush=True)
    best = max(records, key=lambda r: (r["best_dev_bleu"] or float("-inf"), -r["student"]))
    shutil.copy(teacher_file(args.out, records[-1]["student"]), os.path.join(args.out, "teacher.pt"))
    shutil.copy(teacher_file(args.out, best["student"]), os.path.join(args.out, "teacher_best.pt"))
    plot(args.out, records)
    print(f"teacher after {len(records)} students: {os.path.join(args.out, 'teacher.pt')} (best dev BLEU after "
          f"student {best['student']}: teacher_best.pt)")
    return 0


def cli():
    return console_command(main, "l2t-train-teacher")


if __name__ == "__main__":
    sys.exit(cli())
