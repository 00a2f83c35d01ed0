"""The teachers a benchmark keeps: the ``l2t_dlf_trained`` row's, trained across students by
``l2t-train-teacher``, and each learned teacher saved with its run's record."""

import datetime
import os
import statistics
import threading

import torch

from l2t_fairseq import commands
from l2t_fairseq.benchmark.command_lines import without
from l2t_fairseq.benchmark.presets import BASELINE, REPO
from l2t_fairseq.benchmark.run_segments import measured_run
from l2t_fairseq.benchmark.scheduler import held
from l2t_fairseq.teacher.file import CHECKPOINT_KEY, save_teacher_file


class TeacherTraining:
    """The teacher ``l2t-train-teacher`` trains across students of seeds 101, 102, ... with the ``l2t_dlf`` row's
    flags and budget, once, on first use (resumed if cut off)."""

    def __init__(self, benchmark):
        self.benchmark = benchmark
        self.lock = threading.Lock()  # one teacher training, however many runs wait for it

    def teacher(self):
        """The teacher after its best student (by dev BLEU).  Its records (``students.json``, the teacher after
        each student, the plot) go to ``OUT/records/teacher-training/``, so that the training goes on from them on
        another machine; the students' training folders to ``--work``."""
        bench = self.benchmark
        with self.lock, held(os.path.join(bench.args.work, "teacher-training.lock")):
            args, work = bench.args, os.path.join(bench.args.work, "teacher-training")
            kept = os.path.join(bench.records, "teacher-training")
            # the online row's fairseq-train flags, less those l2t-train-teacher sets itself
            flags = without(bench.train_command("l2t_dlf", 0, "RUN", args.max_update)[4:],
                            "--task", "--criterion", "--seed", "--save-dir", "--user-dir")
            command = [*commands.command("l2t-train-teacher"), args.data, *flags, "--out", kept, "--runs", work,
                       "--students", str(args.teacher_students), "--patience", str(args.teacher_patience)]
            os.makedirs(work, exist_ok=True)
            print(f"[{datetime.datetime.now():%H:%M:%S}] teacher training (l2t-train-teacher) in {work}", flush=True)
            measured_run(command, os.path.join(work, "l2t-train-teacher.log"), bench.threads, cwd=REPO)
            return os.path.join(kept, "teacher_best.pt")


def teacher_training_cost(students, runs):
    """What training the ``l2t_dlf_trained`` row's teacher cost (CPU seconds, in cross-entropy runs), and after
    how many taught students it has paid for itself against the online row (whose every student pays for its
    teacher's steps): the training cost over what the online row costs a student more than the trained row."""
    def mean_cpu(row):
        values = [by_row[row]["cpu_seconds"] for by_row in runs.values() if "cpu_seconds" in by_row.get(row, {})]
        return statistics.mean(values) if values else None

    cost = {"students": len(students), "seeds": [s["seed"] for s in students],
            "best_dev_bleu": [s["best_dev_bleu"] for s in students],
            "cpu_seconds": sum(s["cpu_seconds"] for s in students)}
    ce, online, trained = mean_cpu(BASELINE), mean_cpu("l2t_dlf"), mean_cpu("l2t_dlf_trained")
    if ce:
        cost["in_ce_runs"] = cost["cpu_seconds"] / ce
    if online and trained:
        saving = online - trained
        cost["payback_students"] = cost["cpu_seconds"] / saving if saving > 0 else None
    return cost


def save_teacher(checkpoint, path, adam):
    """Only the teacher of an l2t_translation checkpoint (and its Adam state if ``adam``, for ``--continue-teacher``),
    in the layout ``--teacher-path`` reads (kilobytes)."""
    state = torch.load(checkpoint, map_location="cpu")["extra_state"][CHECKPOINT_KEY]
    save_teacher_file(state, str(path), adam)
