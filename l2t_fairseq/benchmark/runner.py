"""Losses side by side on the same student, data, batches, schedule and seeds, with significance tests.

    l2t-benchmark                              # Multi30k (CPU, hours: resumable)
    l2t-benchmark --preset iwslt14-small       # the small IWSLT'14 split (CPU)
    l2t-benchmark --preset full                # full IWSLT'14, the paper's setup (GPU)

Rows (``--rows``), all trained for ``--max-update`` updates of the same student:

- ``cross_entropy``, ``label_smoothed`` (0.1), ``l2t_dlf`` (the online teacher);
- ``l2t_dlf_frozen``: the cheapest form of the paper's test phase.  The teacher of the
  finished ``l2t_dlf`` run of the *next* seed (cyclically), frozen, teaches a fresh student;
- ``l2t_dlf_trained``: the paper's test phase after its training phase.  ``l2t-train-teacher``
  trains one teacher across students of seeds 101, 102, ... (never a test seed), up to
  ``--teacher-students``, stopping after ``--teacher-patience`` students without a better dev
  BLEU; the teacher after its best student, frozen, teaches each seed's fresh student.  The
  teacher's training is done once and its cost reported apart (``OUT/records/teacher-training/``);
- ``cross_entropy_equal_time``: cross-entropy given as many updates as fit in
  the ``l2t_dlf`` run's compute (CPU seconds) of the same seed (at the
  cross-entropy run's speed): is the teacher better than spending its compute
  on more CE?  Under a schedule of the update number alone it is the
  cross-entropy run carried on from its end (or from the end of a shorter
  equal-time run of the same seed, so that the longest one costs its own
  updates alone);
- ``sequence_risk`` (MRT), ``softmax_margin``, ``actor_critic``: fine-tunes of
  the cross-entropy run from its checkpoint at ``--sequence-start`` of the budget
  (Edunov et al. 2018; the actor-critic's critic is pretrained over the first half
  of its fine-tune); their time is the prorated cross-entropy part plus their own;
- ``cross_entropy_equal_time_sequence_risk`` (and ``_softmax_margin``,
  ``_actor_critic``): the same for those rows, which cost more than cross-entropy.

Every run validates with greedy dev BLEU and keeps the best checkpoint by it
(selection on the validation set only); the test set is decoded once per
finished run, from that checkpoint, with beam 5 and BPE removed.  Test BLEU is
corpus BLEU on that tokenized text (fairseq's tokenized BLEU4, computed with
sacrebleu, ``tokenize=none``).  Each row is compared with ``cross_entropy`` of
the same seed by sacrebleu's paired bootstrap resampling (1,000 resamples).

Resuming: each finished run leaves a record in ``OUT/records/`` (its figures,
its test hypotheses and, for L2T runs, the teacher and ``teacher.jsonl``).
Rerunning the same command skips the runs that have a record; a run that was
cut off has none and is redone from scratch in ``--work``.  A fine-tune whose
cross-entropy checkpoint went with ``--work`` (a new machine) trains that run
again to its start, checked against its record.  ``results.json``,
``results.md`` and the plots are rewritten after every finished run.

Two processes on the same ``--work`` share the runs: each run is locked while one of
them trains it (``WORK/ROW-seedN.lock``), and a call leaves a run another process holds,
and the runs that need it, to that process, to be recorded when it finishes.
"""


import argparse
import concurrent.futures
import contextlib
import datetime
import fcntl
import glob
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading

import torch

from l2t_fairseq import checkpoints, commands, teacher_log  # noqa: F401 - checkpoints: torch.load reads fairseq checkpoints
from l2t_fairseq.benchmark.pairing import record_pairing
from l2t_fairseq.benchmark.plots import plot_all
from l2t_fairseq.benchmark.presets import (
    BASELINE,
    EQUAL_TIME,
    EVAL_BLEU,
    PLUGIN,
    PRESETS,
    REPO,
    ROWS,
    SEQUENCE_LEVEL,
    TEACHER_ROWS,
)
from l2t_fairseq.benchmark.report import (
    TEST_BLEU,
    bootstrap_settings,
    markdown,
    pairing_summary,
    summarize,
    verdict,
)
from l2t_fairseq.errors import UsageError
from l2t_fairseq.run_segments import (
    MARKER,
    checkpoint_update,
    console_command,
    dev_bleu_curve,
    measured_run,
    measured_segment,
    resume,
    saved_run,
    segment_logs,
    segments_of,
    start_afresh,
    whole_run_cpu,
)
from l2t_fairseq.teacher_file import CHECKPOINT_KEY, save_teacher_file
from l2t_fairseq.whole_files import write_whole

# a child that runs fairseq-train and reports its peak CUDA memory (0 on the CPU)
TRAIN_CHILD = (
    "import sys, torch; from fairseq_cli.train import cli_main; sys.argv = ['fairseq-train'] + sys.argv[1:]; "
    "cli_main(); print('PEAK_CUDA_BYTES', torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0)"
)


class Benchmark:
    """Runs each (row, seed) once, records it, and reports; ``l2t-search`` reuses it for dev-only runs."""

    decode_test = True  # the search never looks at the test set

    def __init__(self, args, preset):
        self.args, self.preset = args, preset
        self.records = os.path.join(args.out, "records")
        self.threads = args.threads or environment_threads() or max(1, (os.cpu_count() or 1) // args.jobs)
        self.teacher_training_lock = threading.Lock()  # one teacher training, however many runs wait for it
        self.retraining_lock = threading.Lock()

    def row_flags(self, row):
        """The row's loss flags; the L2T rows get --l2t-flags too."""
        flags = list(ROWS[row])
        return flags + shlex.split(self.args.l2t_flags) if row in TEACHER_ROWS else flags

    def is_teacher_row(self, row):
        return "l2t_translation" in self.row_flags(row)

    def teacher_row(self, row):
        """The row whose learned teacher this row starts from, or None."""
        return "l2t_dlf" if row == "l2t_dlf_frozen" else None

    def teacher_source(self, row, seed):
        """The (row, seed) whose learned teacher this run starts from, or None."""
        source = self.teacher_row(row)
        return (source, self.teacher_seed(seed)) if source else None

    def all_rows(self):
        return list(ROWS)

    def continued(self, row):
        """Whether some row goes on training this row's teacher (--continue-teacher): its record keeps the teacher's
        Adam state then, and only then."""
        return any(self.teacher_row(other) == row and "--continue-teacher" in self.row_flags(other)
                   for other in self.all_rows())

    # -- one run ------------------------------------------------------------------

    def key(self, row, seed):
        return f"{row}-seed{seed}"

    def record_path(self, row, seed, suffix=".json"):
        return os.path.join(self.records, self.key(row, seed) + suffix)

    def load(self, row, seed):
        path = self.record_path(row, seed)
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
        return None

    def teacher_seed(self, seed):
        """The seed whose online teacher the frozen row of ``seed`` uses: the next one, cyclically."""
        seeds = self.args.seeds
        return seeds[(seeds.index(seed) + 1) % len(seeds)]

    def finetune_start(self, row):
        """The update of the cross-entropy run of the same seed that this row fine-tunes from; None: trained from
        scratch."""
        return self.args.sequence_start_update if row in SEQUENCE_LEVEL else None

    def checkpoint_folders(self):
        """Where the cross-entropy runs' checkpoints are looked for: ``--work``, then the folders of the search's
        runs taken over."""
        return [self.args.work, *({os.path.dirname(s[1]) for seed in self.args.seeds
                                   if (s := self.searched(BASELINE, seed))} - {self.args.work})]

    def start_checkpoint(self, seed, update):
        """The cross-entropy run's checkpoint at ``update``, and None; where its folder is gone (a machine that
        starts bare, with only the records), that run trained again to ``update`` (see ``retrained_checkpoint``):
        its checkpoint, and what the record of a run that starts from it says of it."""
        for folder in self.checkpoint_folders():
            found = glob.glob(os.path.join(folder, self.key(BASELINE, seed), f"checkpoint_*_{update}.pt"))
            if found:
                return found[0], None
        return self.retrained_checkpoint(seed, update)

    def retrained_checkpoint(self, seed, update):
        """The cross-entropy run of ``seed`` trained again, to ``update`` only, in ``WORK/cross_entropy-seedS-to-U``
        (resumed if cut off): its last checkpoint, and ``{"folder", "dev_bleu_curve", "same_as_record"}``.  Under a
        schedule of the update number alone, on the machine that trained the recorded run, this is that run up to
        ``update`` (its dev BLEU curve is the record's, point for point); on another machine's arithmetic it is
        another run of the same command and seed, which the run that starts from it says it starts from.  Its cost
        is not counted: a fine-tune's record prorates the recorded run's."""
        key = self.key(BASELINE, seed)
        run_dir = os.path.join(self.args.work, f"{key}-to-{update}")
        command = self.train_command(BASELINE, seed, run_dir, update)
        if not extends(command, self.train_command(BASELINE, seed, run_dir, self.args.max_update)):
            raise RuntimeError(f"{key}: no checkpoint at update {update} in {' or '.join(self.checkpoint_folders())} "
                               "to fine-tune from, and its schedule reads the budget: delete its record to redo it")
        last, curve_path = os.path.join(run_dir, "checkpoint_last.pt"), os.path.join(run_dir, "dev_bleu_curve.json")
        # two fine-tunes of one seed, in this process or another, wait for the same run
        with self.retraining_lock, held(run_dir + ".lock"):
            if not os.path.isfile(curve_path):  # written once the run is done
                print(f"[{datetime.datetime.now():%H:%M:%S}] {key}: no checkpoint at update {update}; trained "
                      f"again to there in {run_dir}", flush=True)
                earlier = self.prepare_run_dir(run_dir, command, update)[1]
                output = measured_segment(command, run_dir, self.threads, cwd=REPO)[2]
                if checkpoint_update(last) != update:
                    raise RuntimeError(f"{key}: trained again to update {update}, its last checkpoint is not there")
                with open(curve_path, "w") as f:
                    json.dump(dev_bleu_curve(earlier + output), f)
        with open(curve_path) as f:
            curve = [list(point) for point in json.load(f)]
        record = self.load(BASELINE, seed)
        recorded = [list(point) for point in record["dev_bleu_curve"] if point[0] <= update]
        if curve != recorded:
            theirs = record.get("kernels", "not recorded")
            print(f"  {key}: trained again to update {update} in {run_dir}, its dev BLEU curve {curve} is not its "
                  f"record's {recorded} (another machine's arithmetic: {kernels(self.args.device)} here, {theirs} "
                  "there): "
                  "the run that starts from it is recorded as starting from this one", flush=True)
        return last, {"folder": run_dir, "dev_bleu_curve": curve, "same_as_record": curve == recorded}

    def finetune_flags(self, row, checkpoint):
        """The fine-tune's schedule: the benchmark's fixed lr."""
        flags = ["--lr-scheduler", "fixed", "--lr", str(self.args.finetune_lr)]
        return flags + (["--critic-pretrain-updates", str(self.finetune_updates(row) // 2)]
                        if row == "actor_critic" else [])

    def finetune_updates(self, row):
        return self.args.max_update - self.finetune_start(row)

    def dependencies(self, row, seed):
        needs = [(BASELINE, seed)] if self.finetune_start(row) is not None else []
        if row in EQUAL_TIME:
            needs = [(BASELINE, seed), (EQUAL_TIME[row], seed)]
        source = self.teacher_source(row, seed)
        return needs + ([source] if source else [])

    def searched(self, row, seed):
        """A dev-only run of exactly this command that ``l2t-search`` finished (``--search-records``): its record
        and its training folder, or None."""
        record = same_run_record(self.args.search_records, self.key(row, seed),
                                 self.train_command(row, seed, "RUN", self.args.max_update))
        if record is None:
            return None
        run_dir = after(shlex.split(record["command"]), "--save-dir")
        return (record, run_dir) if os.path.isfile(os.path.join(run_dir, "checkpoint_best.pt")) else None

    def run(self, row, seed, done):
        """Trains (or takes over the search's run of the same command), decodes the test set once, and writes the
        record.  Returns the record."""
        searched = self.searched(row, seed)
        if searched:
            record, run_dir = searched
            print(f"  {self.key(row, seed)}: trained by the search ({run_dir}), test set decoded", flush=True)
            record = dict(record, adopted_from=os.path.join(self.args.search_records, self.key(row, seed) + ".json"))
        else:
            record, run_dir = self.train(row, seed, done)
        os.makedirs(self.records, exist_ok=True)
        if self.decode_test:
            hypotheses, references, record["fairseq_bleu4"] = self.decode_test_set(run_dir)
            record["test_bleu"] = TEST_BLEU.corpus_score(hypotheses, [references]).score
            write_lines(self.record_path(row, seed, ".hyp"), hypotheses)
            write_lines(os.path.join(self.records, "reference.txt"), references)
        if self.is_teacher_row(row):
            log = os.path.join(run_dir, teacher_log.TEACHER_LOG)
            for kept, suffix in ((log, ".teacher.jsonl"), (teacher_log.phi_path(log), ".teacher_phi.npy")):
                if os.path.isfile(kept):  # absent if no refresh fell in the run
                    shutil.copy(kept, self.record_path(row, seed, suffix))
            if "--freeze-teacher" not in self.row_flags(row):  # a teacher that learned: kept for later runs
                save_teacher(os.path.join(run_dir, "checkpoint_last.pt"), self.record_path(row, seed, ".teacher.pt"),
                             adam=self.continued(row))
        if "pairing" not in record:
            record["pairing"] = record_pairing(record, self.threads)
        write_whole(self.record_path(row, seed), json.dumps(record, indent=1))  # only once the run is complete
        return record

    def train(self, row, seed, done):
        """Trains the run; returns its record (without test BLEU) and its training folder."""
        args = self.args
        run_dir = os.path.join(args.work, self.key(row, seed))
        updates, extra = args.max_update, []
        start, retrained = self.finetune_start(row), None
        if start is not None:
            checkpoint, retrained = self.start_checkpoint(seed, start)
            updates = self.finetune_updates(row)
            extra = ["--finetune-from-model", checkpoint, *self.finetune_flags(row, checkpoint)]
        elif row in EQUAL_TIME:
            updates = equal_time_updates(done[(BASELINE, seed)], done[(EQUAL_TIME[row], seed)])
            hold = self.held_lr_updates()
            if hold is not None and updates > args.max_update:
                # a schedule that decays towards the budget's end, carried on, would give the extra updates at its
                # smallest learning rate: the cross-entropy run from the end of its constant phase instead, held
                # there for the extra updates, then decayed as it was
                start = hold
                checkpoint, retrained = self.start_checkpoint(seed, start)
                extra = ["--finetune-from-model", checkpoint, "--warmup-updates", str(updates - args.max_update)]
                updates -= start
        if self.teacher_source(row, seed):
            extra += ["--teacher-path", self.record_path(*self.teacher_source(row, seed), ".teacher.pt")]
        if row == "l2t_dlf_trained":
            extra += ["--teacher-path", self.trained_teacher()]
        command = self.train_command(row, seed, run_dir, updates, extra)
        carried = self.carry_on_baseline(self.shorter_runs(seed, updates, done), run_dir, command) \
            if row in EQUAL_TIME and start is None else None
        resumes, earlier = self.prepare_run_dir(run_dir, command, updates, extend=carried is not None)
        wall, rss, output, cpu = measured_segment(command, run_dir, self.threads, cwd=REPO)
        record = {
            "row": row, "seed": seed, "updates": updates, "wall_seconds": wall, "cpu_seconds": cpu,
            "peak_rss_mib": rss,
            "train_seconds": float(re.findall(r"done training in ([0-9.]+) seconds", output)[-1]),
            "peak_cuda_mib": int(re.findall(r"PEAK_CUDA_BYTES (\d+)", output)[-1]) / 2**20,
            "dev_bleu_curve": dev_bleu_curve(earlier + output),
            "date": f"{datetime.date.today()}", "command": shlex.join(command[3:]),
            "kernels": kernels(self.args.device), "device": self.args.device,
        }
        if resumes:  # only the last segment was measured whole: its cost per update, over the whole run
            share = updates / (updates - resumes[-1])
            for key in ("wall_seconds", "train_seconds"):
                record[key] *= share
            record["cpu_seconds"] = whole_run_cpu(segments_of(run_dir), resumes, cpu, updates)
            record["resumed_at"] = resumes
        if carried:
            record["carries_on"] = carried  # the cross-entropy run, from its end at resumed_at[0]
        if start is not None:  # the budget is the whole run: the cross-entropy part, prorated, plus this one
            ce = done[(BASELINE, seed)]
            record["train_seconds"] += ce["train_seconds"] * start / ce["updates"]
            if "cpu_seconds" in ce:
                record["cpu_seconds"] += ce["cpu_seconds"] * start / ce["updates"]
            else:
                del record["cpu_seconds"]
            record["updates"] = start + updates
            record["peak_rss_mib"] = max(rss, ce["peak_rss_mib"])
            record["peak_cuda_mib"] = max(record["peak_cuda_mib"], ce["peak_cuda_mib"])
            before = retrained["dev_bleu_curve"] if retrained else ce["dev_bleu_curve"]
            record["dev_bleu_curve"] = [p for p in before if p[0] <= start] + [
                (u + start, b) for u, b in record["dev_bleu_curve"]
            ]
            if retrained:
                record["start_trained_again"] = retrained["folder"]
                record["start_same_as_record"] = retrained["same_as_record"]
        record["best_dev_bleu"] = max((b for _, b in record["dev_bleu_curve"]), default=None)
        record["seconds_per_update"] = record["train_seconds"] / record["updates"]
        return record, run_dir

    def train_command(self, row, seed, run_dir, updates, extra=()):
        # save at every validation, so that checkpoint_best.pt is the best by dev BLEU; cross-entropy keeps its
        # interval checkpoints: the sequence-level rows start from the one at the --sequence-start update
        args = self.args
        extra = [*extra, "--save-interval-updates", str(args.validate_every)]
        if row != BASELINE:
            extra += ["--keep-interval-updates", "1"]
        return [
            sys.executable, "-c", TRAIN_CHILD, args.data, "--user-dir", PLUGIN, *self.row_flags(row),
            *self.student_flags(),
            *EVAL_BLEU, "--validate-interval-updates", str(args.validate_every),
            "--max-update", str(updates), "--seed", str(seed), "--save-dir", run_dir, "--no-epoch-checkpoints",
            "--log-format", "simple", "--log-interval", "50", *extra,
        ]

    def student_flags(self):
        """The preset's training flags, then ``--student-flags``."""
        return [*self.preset["train"], *shlex.split(self.args.student_flags)]

    def held_lr_updates(self):
        """Under a step schedule that holds the learning rate for its first W updates (``--warmup-updates`` W
        from ``--warmup-init-lr`` equal to ``--lr``) and decays it before the budget's end: W, else None."""
        flags = self.student_flags()
        hold = int(after(flags, "--warmup-updates", 0))
        if after(flags, "--lr-scheduler") != "step" or not 0 < hold < self.args.max_update:
            return None
        return hold if float(after(flags, "--warmup-init-lr", -1)) == float(after(flags, "--lr")) else None

    def shorter_runs(self, seed, updates, done):
        """The finished cross-entropy runs of ``seed`` shorter than ``updates``, longest first: the equal-time
        runs (recorded in ``OUT``, whether or not among this command's rows), then the cross-entropy row's."""
        runs = [run for row in EQUAL_TIME if (run := done.get((row, seed)) or self.load(row, seed))]
        return sorted((run for run in runs if run["updates"] < updates), key=lambda run: -run["updates"]) + [
            done[(BASELINE, seed)]
        ]

    def carry_on_baseline(self, shorter, run_dir, command):
        """Cross-entropy given more updates, under a learning-rate schedule of the update number alone, is a
        shorter cross-entropy run carried on (the first of ``shorter`` whose last checkpoint is there): the
        folder starts as that run's end (its last and best checkpoints and its logs, under this command at that
        run's budget), which ``prepare_run_dir`` extends.  Returns that run's folder, or None: not when a cut-off
        run of this command is to be resumed there, nor under another schedule."""
        marker = os.path.join(run_dir, MARKER)
        if self.args.resume_cut_runs and os.path.isfile(marker):
            with open(marker) as f:
                if json.load(f)["command"] == command:
                    return None
        for ce in shorter:
            source = after(shlex.split(ce["command"]), "--save-dir")
            at_budget = [*without(command, "--max-update"), "--max-update", str(ce["updates"])]
            last = os.path.join(source, "checkpoint_last.pt")
            if extends(at_budget, command) and os.path.isfile(last) and checkpoint_update(last) == ce["updates"]:
                break
        else:
            return None
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
            shutil.copy(os.path.join(source, name), os.path.join(run_dir, name))
        cut = 0  # the segments the cross-entropy run was resumed in, logged before its train.log
        if os.path.isfile(os.path.join(source, MARKER)):
            with open(os.path.join(source, MARKER)) as f:
                cut = len(json.load(f)["resumes"])
        with open(os.path.join(run_dir, "train.log"), "w") as log:
            log.write(segment_logs(source, cut) + open(os.path.join(source, "train.log")).read())
        with open(marker, "w") as f:
            json.dump({"command": at_budget, "resumes": []}, f)
        return source

    def prepare_run_dir(self, run_dir, command, updates, extend=False):
        """A fresh training folder; or, with ``--resume-cut-runs``, the folder of a run of the same command that
        was cut off before its last update, which fairseq then resumes from its last checkpoint (one cut off
        after training, whose cost no segment left measured, is trained again), or of a finished run whose
        command differs only in a smaller ``--max-update`` (see ``extends``), which goes on to the new budget
        (also without the flag where ``extend``: the cross-entropy run carried on).  Returns the updates at which
        the run was resumed so far ([] for a fresh one) and what its earlier segments logged."""
        saved, update = saved_run(run_dir)
        if saved:
            same = saved["command"] == command and self.args.resume_cut_runs
            longer = extends(saved["command"], command) and (self.args.resume_cut_runs or extend)
            if (same and update < updates) or (longer and update == int(after(saved["command"], "--max-update"))):
                resumes, earlier = resume(run_dir, saved, command, update)
                how = "extended" if longer else "cut off, resumed"
                print(f"  {os.path.basename(run_dir)}: {how} at update {update}", flush=True)
                return resumes, earlier
        start_afresh(run_dir, command)
        return [], ""

    def trained_teacher(self):
        """The teacher ``l2t-train-teacher`` trains across students of seeds 101, 102, ... with the ``l2t_dlf``
        row's flags and budget, trained on first use (resumed if cut off); returns the teacher after its best
        student (by dev BLEU).  Its records (``students.json``, the teacher after each student, the plot) go to
        ``OUT/records/teacher-training/``, so that the training goes on from them on another machine; the students'
        training folders to ``--work``."""
        with self.teacher_training_lock, held(os.path.join(self.args.work, "teacher-training.lock")):
            args, work = self.args, os.path.join(self.args.work, "teacher-training")
            kept = os.path.join(self.records, "teacher-training")
            # the online row's fairseq-train flags, less those l2t-train-teacher sets itself
            flags = without(self.train_command("l2t_dlf", 0, "RUN", args.max_update)[4:],
                            "--task", "--criterion", "--seed", "--save-dir", "--user-dir")
            command = [*commands.command("l2t-train-teacher"), args.data, *flags, "--out", kept, "--runs", work,
                       "--students", str(args.teacher_students), "--patience", str(args.teacher_patience)]
            os.makedirs(work, exist_ok=True)
            print(f"[{datetime.datetime.now():%H:%M:%S}] teacher training (l2t-train-teacher) in {work}", flush=True)
            measured_run(command, os.path.join(work, "l2t-train-teacher.log"), self.threads, cwd=REPO)
            return os.path.join(kept, "teacher_best.pt")

    def decode_test_set(self, run_dir):
        """Test hypotheses and references in corpus order (fairseq's tokenized text, BPE removed), and BLEU4."""
        command = [
            *commands.command("fairseq-generate"), self.args.data, "--user-dir", PLUGIN, "--path",
            os.path.join(run_dir, "checkpoint_best.pt"), "--gen-subset", "test", "--beam", "5", "--remove-bpe",
            "--max-len-a", "1.2", "--max-len-b", "10", *self.preset["generate"],
        ]
        output = measured_run(command, os.path.join(run_dir, "generate.log"), self.threads, cwd=REPO)[2]
        by_id = {"H": {}, "T": {}}
        for kind, index, text in re.findall(r"^([HT])-(\d+)\t(?:[-0-9.e]+\t)?(.*)$", output, re.M):
            by_id[kind][int(index)] = text
        count = max(by_id["T"]) + 1
        hypotheses = [by_id["H"].get(i, "") for i in range(count)]
        references = [by_id["T"].get(i, "") for i in range(count)]
        return hypotheses, references, float(re.search(r"BLEU4 = ([0-9.]+)", output).group(1))

    # -- all runs -------------------------------------------------------------------

    def wanted(self):
        return [(row, seed) for seed in self.args.seeds for row in self.args.rows]

    def recorded(self):
        """The finished runs of the wanted rows and seeds."""
        return {key: record for key in self.wanted() if (record := self.load(*key)) is not None}

    def run_all(self):
        """Every (row, seed) without a record, as soon as what it needs is done, ``--jobs`` at a time."""
        wanted = self.wanted()
        done = self.recorded()
        for key in done:
            print(f"  {self.key(*key)}: recorded, skipped", flush=True)
        pending = [key for key in wanted if key not in done]
        missing = {need for key in pending for need in self.dependencies(*key) if need not in wanted}
        if missing:
            raise UsageError(f"cannot run {[self.key(*k) for k in pending]}: they need "
                             f"{sorted(self.key(*k) for k in missing)} (add those rows)")
        failures = []
        with concurrent.futures.ThreadPoolExecutor(self.args.jobs) as pool:
            running = {}
            while pending or running:
                elsewhere, progressed = [], False  # held by another process; recorded by it since
                for key in list(pending):
                    if len(running) >= self.args.jobs or failures:
                        break
                    if not all(need in done for need in self.dependencies(*key)):
                        continue
                    claimed = self.claim(*key)
                    if claimed is None:
                        elsewhere.append(key)
                        continue
                    pending.remove(key)
                    if (record := self.load(*key)) is not None:  # the other process finished it meanwhile
                        claimed.close()
                        print(f"  {self.key(*key)}: recorded by another process", flush=True)
                        done[key], progressed = record, True
                        continue
                    print(f"[{datetime.datetime.now():%H:%M:%S}] start {self.key(*key)}", flush=True)
                    running[pool.submit(self.claimed_run, claimed, *key, dict(done))] = key
                if not running:
                    if failures:  # nothing more is started after a failure: report it, not the runs left
                        break
                    if progressed:  # what needed it may come before it: another pass
                        continue
                    print(f"  left to the other process (training {[self.key(*k) for k in elsewhere]}): "
                          f"{[self.key(*k) for k in pending]}", flush=True)
                    break
                finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    key = running.pop(future)
                    try:
                        done[key] = future.result()
                    except RuntimeError as e:
                        failures.append(str(e))
                        continue
                    r = done[key]
                    test = f"test BLEU {r['test_bleu']:.2f}, " if "test_bleu" in r else ""
                    print(f"[{datetime.datetime.now():%H:%M:%S}] done {self.key(*key)}: {test}"
                          f"best dev BLEU {r['best_dev_bleu']}, {r['train_seconds']:.0f} s", flush=True)
                    self.report(done)
        if failures:
            raise RuntimeError("\n".join(failures))
        return done

    def claim(self, row, seed):
        """The run's lock (an open file), or None where another process holds it.  The trained row also needs no
        other process to be training its teacher (``trained_teacher`` then takes that lock itself; a run of this
        process that is training it is waited for there)."""
        if row == "l2t_dlf_trained" and not self.teacher_training_lock.locked():
            training = claim(os.path.join(self.args.work, "teacher-training.lock"))
            if training is None:
                return None
            training.close()
        return claim(os.path.join(self.args.work, self.key(row, seed) + ".lock"))

    def claimed_run(self, claimed, row, seed, done):
        with claimed:
            return self.run(row, seed, done)

    def report(self, done):
        runs = {}
        for (row, seed), record in done.items():
            runs.setdefault(str(seed), {})[row] = record
        rows = [row for row in self.args.rows if any(row in by_row for by_row in runs.values())]
        summary = summarize(runs, rows, self.records)
        meta = {
            "date": f"{datetime.date.today()}", "command": shlex.join(["l2t-benchmark", *self.args.argv]),
            "preset": self.args.preset, "data": self.args.data, "seeds": self.args.seeds,
            "max_update": self.args.max_update, "validate_every": self.args.validate_every,
            "sequence_start_update": self.args.sequence_start_update,
            "finetune_lr": self.args.finetune_lr, "l2t_flags": self.args.l2t_flags, "jobs": self.args.jobs,
            "machine": f"{os.cpu_count()} CPU cores, {self.threads} thread(s) per run, {self.args.jobs} run(s) at "
                       "a time" + (", CUDA" if torch.cuda.is_available() else ", CPU only"),
            "finished_runs": len(done),
            # --report lists what is there; the rows and seeds it is given need not all be planned
            "planned_runs": None if self.args.report else len(self.args.rows) * len(self.args.seeds),
            "bootstrap": bootstrap_settings(),
            "pairing": pairing_summary(runs),
        }
        students = os.path.join(self.records, "teacher-training", "students.json")
        if "l2t_dlf_trained" in rows and os.path.isfile(students):
            with open(students) as f:
                meta["teacher_training"] = teacher_training_cost(json.load(f), runs)
        meta["verdict"] = verdict(summary, runs)
        table = markdown(summary, meta)
        # whole files only: another process on the same --out may read them, or write them, meanwhile
        write_whole(os.path.join(self.args.out, "results.json"), json.dumps({"meta": meta, "summary": summary,
                                                                              "runs": runs}, indent=1))
        write_whole(os.path.join(self.args.out, "results.md"), table)
        plot_all(self.args.out, self.args.data)
        return table


def validation_update(fraction, args):
    """The update at ``fraction`` of the budget, rounded down to a validation (where checkpoints are saved), and
    at least the first one."""
    return max(args.validate_every, int(fraction * args.max_update) // args.validate_every * args.validate_every)


# learning-rate schedules that read the update number alone, never the budget (fairseq's default is fixed)
BUDGET_FREE_SCHEDULES = {"fixed", "inverse_sqrt", "step"}


def after(words, flag, default=None):
    """The value of ``flag`` in a command line (its last occurrence), or ``default``."""
    positions = [i for i, word in enumerate(words) if word == flag]
    return words[positions[-1] + 1] if positions else default


def extends(saved, command):
    """Whether ``command`` is ``saved`` with a larger ``--max-update`` and nothing that reads the budget: a
    learning-rate schedule of the update number alone and no teacher (whose state includes the training's
    progress, update / budget).  Trained on from the shorter run's end, it is the longer run."""
    budget = after(saved, "--max-update")
    if budget is None or after(command, "--max-update") is None:
        return False
    return (without(saved, "--max-update") == without(command, "--max-update")
            and int(after(command, "--max-update")) > int(budget)
            and after(command, "--lr-scheduler", "fixed") in BUDGET_FREE_SCHEDULES
            and after(command, "--task") != "l2t_translation")


def same_run_record(folder, name, command):
    """The run record ``folder/name.json`` (of the benchmark or the search) if its run had exactly ``command``
    but for where it saved its checkpoints, else None (also without a folder)."""
    if not folder or not os.path.isfile(os.path.join(folder, name + ".json")):
        return None
    with open(os.path.join(folder, name + ".json")) as f:
        record = json.load(f)
    same = without(shlex.split(record["command"]), "--save-dir") == without(command[3:], "--save-dir")
    return record if same else None


def without(words, *flags):
    """A command line without these flags and their values."""
    words = list(words)
    for flag in flags:
        if flag in words:
            index = words.index(flag)
            del words[index:index + 2]
    return words


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


def kernels(device):
    """What a run's arithmetic depends on beyond its command: the CPU's kernels, or the GPU and CUDA's version."""
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}, torch {torch.__version__}"
    return cpu_kernels()


def on_device(preset, device):
    """The preset as it trains and decodes on ``device``: on a GPU, its ``--cpu`` flags dropped."""
    if device == "cpu":
        return preset
    return {**preset, **{key: [f for f in preset[key] if f != "--cpu"] for key in ("train", "generate")}}


def check_device(out, device):
    """One line where OUT already holds records made on the other device: GPU and CPU rows are never mixed (their
    costs differ, and so can their arithmetic)."""
    for path in sorted(glob.glob(os.path.join(out, "records", "*.json"))):
        with open(path) as f:
            recorded = json.load(f).get("device", "cpu")
        if recorded != device:
            raise UsageError(f"--out {out}: holds records made on the {recorded} ({os.path.basename(path)}); "
                             f"give --device {device} runs a folder of their own")


def cpu_kernels():
    """What a CPU run's arithmetic depends on beyond its command: the processor, the instruction set torch's
    kernels use, torch's version (a run trained again where one of them differs may not be the recorded run)."""
    model = platform.processor() or "unknown"
    if os.path.isfile("/proc/cpuinfo"):  # Linux: the model's name, where platform gives only the architecture
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    return f"{model}, {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}"


def environment_threads():
    """The threads per process that the environment asks for (``OMP_NUM_THREADS``, as torch reads it), or None."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def equal_time_updates(ce, l2t):
    """As many cross-entropy updates as fit in the L2T run's compute at the cross-entropy run's speed: CPU seconds
    (which leave out waiting for a core) where both records have them, else training seconds."""
    key = "cpu_seconds" if "cpu_seconds" in ce and "cpu_seconds" in l2t else "train_seconds"
    return round(l2t[key] / (ce[key] / ce["updates"]))


def claim(path):
    """An exclusive lock on ``path`` that no other process holds: the open file that holds it (closing it, or the
    process ending, releases it), or None."""
    f = open(path, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


@contextlib.contextmanager
def held(path):
    """An exclusive lock on ``path``, waited for, across processes."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def write_lines(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def save_teacher(checkpoint, path, adam):
    """Only the teacher of an l2t_translation checkpoint (and its Adam state if ``adam``, for ``--continue-teacher``),
    in the layout ``--teacher-path`` reads (kilobytes)."""
    state = torch.load(checkpoint, map_location="cpu")["extra_state"][CHECKPOINT_KEY]
    save_teacher_file(state, str(path), adam)


def add_run_arguments(parser, out_help, work_default, default_seeds):
    """The options the benchmark and the search share."""
    parser.add_argument("--preset", choices=list(PRESETS), default="multi30k")
    parser.add_argument("--data", help="binarized data (default: the preset's, prepared if missing)")
    parser.add_argument("--out", help=out_help)
    parser.add_argument("--work", help=f"training folders (default: {work_default})")
    parser.add_argument("--seeds", type=int, nargs="+", default=default_seeds)
    parser.add_argument("--max-update", type=int, help="student updates per run (default: the preset's)")
    parser.add_argument("--validate-every", type=int, help="updates between validations (dev BLEU, checkpoint "
                        "selection; default: the preset's)")
    parser.add_argument("--jobs", type=int, help="runs at a time, sharing the CPU cores (default: the preset's)")
    parser.add_argument("--threads", type=int, help="threads per run (default: OMP_NUM_THREADS where it is set, "
                        "else the CPU cores shared by --jobs)")
    parser.add_argument("--l2t-flags", default="", help="extra fairseq-train flags of the L2T-DLF runs, "
                        "e.g. '--teacher-interval 50' (default: the plugin's defaults)")
    parser.add_argument("--student-flags", default="", help="extra fairseq-train flags of every run, after the "
                        "preset's, e.g. '--lr 1e-3' (default: none)")
    parser.add_argument("--resume-cut-runs", action="store_true", help="a run cut off goes on from its last "
                        "checkpoint instead of starting again (for runs longer than a machine is held; its CPU time "
                        "adds up its segments' snapshots, its wall time is the last segment's per update, and "
                        "past its first epoch fairseq draws the resumed epoch's batches anew, so it is no longer "
                        "bit-identical to an uninterrupted run); a finished cross-entropy run in --work given a "
                        "larger --max-update (and a new --out) goes on to it when its learning-rate schedule "
                        "ignores the budget (fixed, inverse_sqrt, step)")


def prepared_data(args, preset, parser):
    """``--data``, or the preset's data, prepared on first use."""
    if args.data is None:
        if not os.path.isfile(os.path.join(REPO, preset["data"], "dict.en.txt")):
            subprocess.run(preset["prepare"], check=True, cwd=REPO)
        return preset["data"]
    if not os.path.isfile(os.path.join(args.data, "dict.en.txt")):
        parser.error(f"--data {args.data}: no dict.en.txt (not a fairseq-preprocess folder)")
    return args.data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "tables, plots and run records (default: docs/benchmark/PRESET)",
                      "runs/benchmark/PRESET", default_seeds=[1, 2, 3])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--sequence-start", type=float, default=0.9,
                        help="fraction of the budget trained with cross-entropy before MRT/softmax-margin fine-tuning "
                        "(rounded down to a validation)")
    parser.add_argument("--finetune-lr", type=float, help="fixed lr of the sequence-level fine-tuning "
                        "(default: a tenth of the preset's peak lr)")
    parser.add_argument("--teacher-students", type=int, default=5, help="l2t_dlf_trained: at most this many "
                        "students train its teacher (l2t-train-teacher --students)")
    parser.add_argument("--teacher-patience", type=int, default=2, help="l2t_dlf_trained: stop training its "
                        "teacher after this many students without a better dev BLEU")
    parser.add_argument("--search-records", help="take over l2t-search's finished runs of exactly the row's "
                        "command from this folder of search records (e.g. the runs that measured the budget), and "
                        "only decode their test sets; their training folders stay where the search left them")
    parser.add_argument("--report", action="store_true", help="train nothing: rewrite the tables and plots from "
                        "the finished runs' records")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: train and decode on the "
                        "GPU, --jobs runs at once on it (the preset's --cpu dropped); the records, their own "
                        "cross-entropy rows included, go to OUT-cuda (default --out and --work) and name the GPU")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: PyTorch sees no CUDA device here")
    preset = on_device(PRESETS[args.preset], args.device)
    args.max_update = args.max_update or preset["max_update"]
    args.jobs = args.jobs or preset["jobs"]
    args.validate_every = min(args.validate_every or preset["validate_every"], args.max_update)
    args.sequence_start_update = validation_update(args.sequence_start, args)
    student = [*preset["train"], *shlex.split(args.student_flags)]
    args.finetune_lr = args.finetune_lr or float(after(student, "--lr")) / 10
    suffix = "-cuda" if args.device == "cuda" else ""
    args.out = args.out or os.path.join("docs", "benchmark", args.preset + suffix)
    args.work = args.work or os.path.join("runs", "benchmark", args.preset + suffix)
    check_device(args.out, args.device)
    args.rows = [row for row in ROWS if row in args.rows]  # cross_entropy first: the baseline
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.validate_every < 1:
        parser.error(f"--validate-every must be at least 1, got {args.validate_every}")
    if any(row in SEQUENCE_LEVEL for row in args.rows) and args.sequence_start_update >= args.max_update:
        parser.error(f"--sequence-start: the fine-tunes would start at update {args.sequence_start_update} of "
                     f"{args.max_update}; validate more often (--validate-every)")
    args.data = prepared_data(args, preset, parser)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)

    benchmark = Benchmark(args, preset)
    done = benchmark.recorded() if args.report else benchmark.run_all()
    print(benchmark.report(done))
    return 0


def cli(entry=None, name="l2t-benchmark"):
    return console_command(entry or main, name)


if __name__ == "__main__":  # python -m l2t_fairseq.benchmark.runner: l2t-benchmark in the active environment
    sys.exit(cli())
