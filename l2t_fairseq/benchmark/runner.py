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
- ``l2t_dlf_fixed``: the L2T-DLF loss at the teacher's initial coefficients, never stepped (the loss's shape
  without what the teacher learns); ``token_adaptive`` and ``loss_truncation``: the field's fixed token weighting;
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
the same seed by sacrebleu's paired bootstrap resampling (10,000 resamples).

Resuming: each finished run leaves a record in ``OUT/records/`` (its figures,
its test hypotheses, what pairs it with the other rows of its seed and, for L2T runs, the teacher and its
log).
Rerunning the same command skips the runs that have a record; a run that was
cut off has none and is redone from scratch in ``--work``.  A fine-tune whose
cross-entropy checkpoint went with ``--work`` (a new machine) trains that run
again to its start, checked against its record.  ``results.json``,
``results.md`` and the plots are rewritten after every finished run.

Two processes on the same ``--work`` share the runs: each run is locked while one of
them trains it (``WORK/ROW-seedN.lock``), and a call leaves a run another process holds,
and the runs that need it, to that process, to be recorded when it finishes.

The parts: :mod:`~l2t_fairseq.benchmark.scheduler` (which runs, in what order, and their locks), this module (one
run and its record), :mod:`~l2t_fairseq.benchmark.equal_time`, :mod:`~l2t_fairseq.benchmark.start_checkpoints`
(where a fine-tune starts), :mod:`~l2t_fairseq.benchmark.teacher_training`, :mod:`~l2t_fairseq.benchmark.test_set`,
:mod:`~l2t_fairseq.benchmark.results` (the tables and plots) and :mod:`~l2t_fairseq.benchmark.cli`.  ``l2t-search``
composes the same parts with its own rows, records and report (:mod:`~l2t_fairseq.benchmark.search`).
"""

import datetime
import json
import os
import re
import shlex
import shutil
import sys

from l2t_fairseq import teacher_log
from l2t_fairseq.benchmark.command_lines import after, extends, same_run_record
from l2t_fairseq.benchmark.equal_time import EqualTime, equal_time_updates
from l2t_fairseq.benchmark.kernels import fingerprint, kernel_identity, pins_in_force
from l2t_fairseq.benchmark.machine import cpu_kernels, environment_threads, kernels
from l2t_fairseq.benchmark.pairing import record_pairing
from l2t_fairseq.benchmark.presets import BASELINE, EQUAL_TIME, EVAL_BLEU, PLUGIN, REPO, BenchmarkRows
from l2t_fairseq.benchmark.report import TEST_BLEU
from l2t_fairseq.benchmark.results import write_results
from l2t_fairseq.benchmark.run_segments import (
    dev_bleu_curve,
    measured_segment,
    resume,
    saved_run,
    segments_of,
    start_afresh,
    whole_run_cpu,
)
from l2t_fairseq.benchmark.scheduler import Scheduler
from l2t_fairseq.benchmark.start_checkpoints import StartCheckpoints
from l2t_fairseq.benchmark.teacher_training import TeacherTraining, save_teacher
from l2t_fairseq.benchmark.test_set import HYPOTHESES, decode_test_set, test_side_path, write_lines
from l2t_fairseq.refresh import checkpoints  # noqa: F401 - torch.load reads fairseq checkpoints
from l2t_fairseq.whole_files import write_whole

# a child that runs fairseq-train and reports its peak CUDA memory (0 on the CPU)
TRAIN_CHILD = (
    "import sys, torch; from fairseq_cli.train import cli_main; sys.argv = ['fairseq-train'] + sys.argv[1:]; "
    "cli_main(); print('PEAK_CUDA_BYTES', torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0)"
)


class Benchmark:
    """Runs each (row, seed) once, records it, and reports.  ``l2t-search`` builds one with its own ``rows``, its
    records folder, a ``fallback`` for records made elsewhere (``fallback(benchmark, row, seed)``), where its
    fine-tunes find their checkpoints, its ``reporter`` (``reporter(benchmark, done)``), and no test set."""

    def __init__(self, args, preset, rows=None, records="records", fallback=None, checkpoint_folders=None,
                 reporter=write_results, decode_test=True):
        self.args, self.preset = args, preset
        self.rows = rows or BenchmarkRows(args)
        self.records = os.path.join(args.out, records)
        self.fallback, self.reporter, self.decode_test = fallback, reporter, decode_test
        self.threads = args.threads or environment_threads() or max(1, (os.cpu_count() or 1) // args.jobs)
        self.scheduler = Scheduler(self)
        self.teacher_training = TeacherTraining(self)
        self.starts = StartCheckpoints(self, checkpoint_folders or self.checkpoint_folders)
        self.equal_time = EqualTime(self)

    def kernel_facts(self):
        """What a run's record says of its kernels: ``kernels`` (``machine.kernels``; on the CPU with the
        instruction set the runs use, which pins may set below this process's own), and on the CPU the pins in
        force (which the runs inherit) and the kernel fingerprint of runs under them (cached per machine), which
        pairs runs.  GPU runs' arithmetic is named by their device alone."""
        if self.args.device != "cpu":
            return {"kernels": kernels(self.args.device)}
        measured = fingerprint(self.threads)
        return {"kernels": cpu_kernels(measured["capability"]), "kernel_pins": pins_in_force(),
                "kernel_fingerprint": measured["kernel_fingerprint"]}

    def same_kernels(self, record):
        """Whether ``record``'s run ran on the kernels of this machine's runs (``kernels.kernel_identity``): a
        record made elsewhere is not one of them."""
        return kernel_identity(record) == kernel_identity(self.kernel_facts())

    def row_flags(self, row):
        return self.rows.flags(row)

    def data(self, row):
        """The binarized data the row trains on: the preset's, or one of its own (``row_data``)."""
        return self.preset.get("row_data", {}).get(row, {}).get("data", self.args.data)

    def is_teacher_row(self, row):
        return "l2t_translation" in self.row_flags(row)

    def teacher_source(self, row, seed):
        """The (row, seed) whose learned teacher this run starts from, or None."""
        source = self.rows.teacher_row(row)
        return (source, self.teacher_seed(seed)) if source else None

    def continued(self, row):
        """Whether some row goes on training this row's teacher (--continue-teacher): its record keeps the teacher's
        Adam state then, and only then."""
        return any(self.rows.teacher_row(other) == row and "--continue-teacher" in self.row_flags(other)
                   for other in self.rows.names())

    def teacher_seed(self, seed):
        """The seed whose online teacher the frozen row of ``seed`` uses: the next one, cyclically."""
        seeds = self.args.seeds
        return seeds[(seeds.index(seed) + 1) % len(seeds)]

    def key(self, row, seed):
        return f"{row}-seed{seed}"

    def record_path(self, row, seed, suffix=".json"):
        return os.path.join(self.records, self.key(row, seed) + suffix)

    def load(self, row, seed):
        path = self.record_path(row, seed)
        if os.path.isfile(path):
            with open(path) as f:
                return json.load(f)
        return self.fallback(self, row, seed) if self.fallback else None

    def dependencies(self, row, seed):
        needs = [(BASELINE, seed)] if self.rows.finetune_start(row) is not None else []
        if row in EQUAL_TIME:
            needs = [(BASELINE, seed), (EQUAL_TIME[row], seed)]
        source = self.teacher_source(row, seed)
        return needs + ([source] if source else [])

    def searched(self, row, seed):
        """A dev-only run of exactly this command that ``l2t-search`` finished (``--search-records``): its record
        and its training folder, or None."""
        record = same_run_record(self.args.search_records, self.key(row, seed),
                                 self.train_command(row, seed, "RUN", self.args.max_update), self.same_kernels)
        if record is None:
            return None
        run_dir = after(shlex.split(record["command"]), "--save-dir")
        return (record, run_dir) if os.path.isfile(os.path.join(run_dir, "checkpoint_best.pt")) else None

    def checkpoint_folders(self):
        """Where the cross-entropy runs' checkpoints are looked for: ``--work``, then the folders of the search's
        runs taken over."""
        return [self.args.work, *({os.path.dirname(s[1]) for seed in self.args.seeds
                                   if (s := self.searched(BASELINE, seed))} - {self.args.work})]

    def run_all(self):
        return self.scheduler.run_all()

    def recorded(self):
        return self.scheduler.recorded()

    def report(self, done):
        return self.reporter(self, done)

    # -- one run ------------------------------------------------------------------
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
            hypotheses, references, sources, record["fairseq_bleu4"] = decode_test_set(
                self.data(row), self.preset["generate"], run_dir, self.threads)
            record["test_bleu"] = TEST_BLEU.corpus_score(hypotheses, [references]).score
            greedy = decode_test_set(self.data(row), self.preset["generate"], run_dir, self.threads, beam=1)[0]
            record["test_bleu_greedy"] = TEST_BLEU.corpus_score(greedy, [references]).score
            write_lines(self.record_path(row, seed, HYPOTHESES), hypotheses)
            for name, lines in (("reference.txt", references), ("source.txt", sources)):
                write_lines(test_side_path(self.records, name, row, self.data(row) != self.args.data), lines)
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
        start, retrained = self.rows.finetune_start(row), None
        if start is not None:
            checkpoint, retrained = self.starts.checkpoint(seed, start)
            updates = args.max_update - start
            extra = ["--finetune-from-model", checkpoint, *self.rows.finetune_flags(row, checkpoint)]
        elif row in EQUAL_TIME:
            updates = equal_time_updates(done[(BASELINE, seed)], done[(EQUAL_TIME[row], seed)])
            hold = self.equal_time.held_lr_updates()
            if hold is not None and updates > args.max_update:
                # a schedule that decays towards the budget's end, carried on, would give the extra updates at its
                # smallest learning rate: the cross-entropy run from the end of its constant phase instead, held
                # there for the extra updates, then decayed as it was
                start = hold
                checkpoint, retrained = self.starts.checkpoint(seed, start)
                extra = ["--finetune-from-model", checkpoint, "--warmup-updates", str(updates - args.max_update)]
                updates -= start
        if self.teacher_source(row, seed):
            extra += ["--teacher-path", self.record_path(*self.teacher_source(row, seed), ".teacher.pt")]
        if row == "l2t_dlf_trained":
            extra += ["--teacher-path", self.teacher_training.teacher()]
        command = self.train_command(row, seed, run_dir, updates, extra)
        carried = None
        if row in EQUAL_TIME and start is None:
            shorter = self.equal_time.shorter_runs(seed, updates, done)
            carried = self.equal_time.carry_on_baseline(shorter, run_dir, command)
        resumes, earlier = self.prepare_run_dir(run_dir, command, updates, extend=carried is not None)
        wall, rss, output, cpu = measured_segment(command, run_dir, self.threads, cwd=REPO)
        record = {
            "row": row, "seed": seed, "updates": updates, "wall_seconds": wall, "cpu_seconds": cpu,
            "peak_rss_mib": rss,
            "train_seconds": float(re.findall(r"done training in ([0-9.]+) seconds", output)[-1]),
            "peak_cuda_mib": int(re.findall(r"PEAK_CUDA_BYTES (\d+)", output)[-1]) / 2**20,
            "dev_bleu_curve": dev_bleu_curve(earlier + output),
            "date": f"{datetime.date.today()}", "command": shlex.join(command[3:]),
            "device": self.args.device, **self.kernel_facts(),
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
        extra = [*extra, *self.rows.student_flags(row), "--save-interval-updates", str(args.validate_every)]
        if row != BASELINE:
            extra += ["--keep-interval-updates", "1"]
        return [
            sys.executable, "-c", TRAIN_CHILD, self.data(row), "--user-dir", PLUGIN, *self.row_flags(row),
            *self.student_flags(),
            *EVAL_BLEU, "--validate-interval-updates", str(args.validate_every),
            "--max-update", str(updates), "--seed", str(seed), "--save-dir", run_dir, "--no-epoch-checkpoints",
            "--log-format", "simple", "--log-interval", "50", *extra,
        ]

    def student_flags(self):
        """The preset's training flags, then ``--student-flags``."""
        return [*self.preset["train"], *shlex.split(self.args.student_flags)]

    def prepare_run_dir(self, run_dir, command, updates, extend=False):
        """A fresh training folder; or, with ``--resume-cut-runs``, the folder of a run of the same command that
        was cut off before its last update, which fairseq then resumes from its last checkpoint (one cut off
        after training, whose cost no segment left measured, is trained again), or of a finished run whose
        command differs only in a smaller ``--max-update`` (see ``extends``), which goes on to the new budget
        (also without the flag where ``extend``: the cross-entropy run carried on).  Returns the updates at which
        the run was resumed so far ([] for a fresh one) and what its earlier segments logged.  A folder whose run
        was cut off on other kernels than this machine's runs (``command.json``'s ``kernels``) starts afresh."""
        saved, update = saved_run(run_dir)
        identity = kernel_identity(self.kernel_facts())
        if saved and saved.get("kernels", identity) != identity:  # a run is trained on one kind of kernels
            print(f"  {os.path.basename(run_dir)}: cut off on other kernels ({saved['kernels']}), trained afresh",
                  flush=True)
        elif saved:
            same = saved["command"] == command and self.args.resume_cut_runs
            longer = extends(saved["command"], command) and (self.args.resume_cut_runs or extend)
            if (same and update < updates) or (longer and update == int(after(saved["command"], "--max-update"))):
                resumes, earlier = resume(run_dir, saved, command, update)
                how = "extended" if longer else "cut off, resumed"
                print(f"  {os.path.basename(run_dir)}: {how} at update {update}", flush=True)
                return resumes, earlier
        start_afresh(run_dir, command, identity)
        return [], ""

