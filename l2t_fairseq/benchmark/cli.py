"""``l2t-benchmark``: the command line of the benchmark (:mod:`l2t_fairseq.benchmark.runner` says what it runs).

    l2t-benchmark                              # Multi30k (CPU, hours: resumable)
    l2t-benchmark --preset iwslt14-small       # the small IWSLT'14 split (CPU)
    l2t-benchmark --preset full                # full IWSLT'14, the paper's setup (GPU)
"""

import argparse
import os
import shlex
import subprocess
import sys

import torch

from l2t_fairseq.benchmark import runner
from l2t_fairseq.benchmark.command_lines import after, validation_update
from l2t_fairseq.benchmark.kernels import pin_kernels
from l2t_fairseq.benchmark.machine import check_device, on_device
from l2t_fairseq.benchmark.presets import DATA_ROWS, PRESETS, REPO, ROWS, SEQUENCE_LEVEL
from l2t_fairseq.benchmark.run_segments import console_command


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
    parser.add_argument("--no-pin-kernels", action="store_true", help="leave torch's CPU kernels to the machine's "
                        "own choice instead of pinning them to AVX2 (l2t_fairseq.benchmark.kernels); the records' "
                        "kernel fingerprints then differ between processors, and so may their runs")


def prepared_data(args, preset, parser):
    """``--data``, or the preset's data, prepared on first use."""
    if args.data is None:
        if not os.path.isfile(os.path.join(REPO, preset["data"], "dict.en.txt")):
            subprocess.run(preset["prepare"], check=True, cwd=REPO, env={**os.environ, "PYTHON": sys.executable})
        return preset["data"]
    if not os.path.isfile(os.path.join(args.data, "dict.en.txt")):
        parser.error(f"--data {args.data}: no dict.en.txt (not a fairseq-preprocess folder)")
    return args.data


def resolved_preset(args, parser, work):
    """The preset as it trains on ``args.device``, its defaults filled into ``args``: the budget, the validations,
    the runs at a time, ``--out`` (``docs/benchmark/PRESET``) and ``--work`` (``runs/WORK/PRESET``), a GPU's
    folders of their own.  On the CPU, the kernels the runs will inherit are pinned (``--no-pin-kernels``: not)."""
    preset = on_device(PRESETS[args.preset], args.device)
    if args.device == "cpu":
        pin_kernels(not args.no_pin_kernels)
    args.max_update = args.max_update or preset["max_update"]
    args.jobs = args.jobs or preset["jobs"]
    args.validate_every = min(args.validate_every or preset["validate_every"], args.max_update)
    suffix = "-cuda" if args.device == "cuda" else ""
    args.out = args.out or os.path.join("docs", "benchmark", args.preset + suffix)
    args.work = args.work or os.path.join("runs", work, args.preset + suffix)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.validate_every < 1:
        parser.error(f"--validate-every must be at least 1, got {args.validate_every}")
    return preset


def main(argv=None):
    parser = argparse.ArgumentParser(description=runner.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "tables, plots and run records (default: docs/benchmark/PRESET)",
                      "runs/benchmark/PRESET", default_seeds=[1, 2, 3])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), help="default: every row the preset offers")
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
    preset = resolved_preset(args, parser, "benchmark")
    args.sequence_start_update = validation_update(args.sequence_start, args)
    student = [*preset["train"], *shlex.split(args.student_flags)]
    args.finetune_lr = args.finetune_lr or float(after(student, "--lr")) / 10
    check_device(args.out, args.device)
    lacking = [row for row in args.rows or () if row in DATA_ROWS and row not in preset.get("row_data", {})]
    if lacking:
        parser.error(f"--rows {' '.join(lacking)}: the preset {args.preset} has no data of their own for them")
    offered = [row for row in ROWS if row not in DATA_ROWS or row in preset.get("row_data", {})]
    args.rows = [row for row in offered if row in (args.rows or offered)]  # cross_entropy first: the baseline
    if any(row in SEQUENCE_LEVEL for row in args.rows) and args.sequence_start_update >= args.max_update:
        parser.error(f"--sequence-start: the fine-tunes would start at update {args.sequence_start_update} of "
                     f"{args.max_update}; validate more often (--validate-every)")
    args.data = prepared_data(args, preset, parser)
    for row in args.rows:  # the rows that train on data of their own
        if row in preset.get("row_data", {}):
            prepared_data(argparse.Namespace(data=None), preset["row_data"][row], parser)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)

    benchmark = runner.Benchmark(args, preset)
    done = benchmark.recorded() if args.report else benchmark.run_all()
    print(benchmark.report(done))
    return 0


def cli(entry=None, name="l2t-benchmark"):
    return console_command(entry or main, name)


if __name__ == "__main__":  # python -m l2t_fairseq.benchmark.cli: l2t-benchmark in the active environment
    sys.exit(cli())
