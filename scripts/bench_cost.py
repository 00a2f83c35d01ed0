"""What the teacher costs per update: cross-entropy and L2T-DLF trained side by side, as fairseq users train.

    python scripts/bench_cost.py DATA_BIN [--students toy lstm1 iwslt] [--rows cross_entropy l2t_dlf l2t_dlf_frozen]
        [--precisions fp32 fp16] [--kernels pinned unpinned] [--updates 300] [--device cpu|cuda]
        [--l2t-flags "--unroll-steps 10 ..."] [--out cost.json] [fairseq-train flags of every run...]

Each run is ``fairseq-train`` in a process of its own (the active Python's ``fairseq_cli.train``), validation and
checkpoints off, the teacher at its defaults (K = 100, U = 20, ``--unroll-start past``) unless flags say otherwise.
From its log: seconds per update over the updates after the first refresh (*steady*, refreshes included, from
fairseq's ``ups``), the same less the refreshes' own seconds (*between refreshes*, from ``teacher.jsonl``), and
the peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS).  Every L2T row is
divided by the cross-entropy run of the same student and precision over the same updates.  The frozen row's
teacher is the online run's, so ``--rows`` must list ``l2t_dlf`` before ``l2t_dlf_frozen``.  On the CPU,
``--kernels pinned unpinned`` trains every row under the benchmark's pinned kernels and under the machine's own
(``l2t_fairseq.benchmark.kernels``), one after the other, and divides each pinned run by its unpinned twin: what
pinning costs.

Prints a markdown table; ``--out`` also writes the figures as JSON.
"""

import argparse
import json
import os
import platform
import re
import shlex
import sys
import tempfile

import torch

from l2t_fairseq import teacher_log
from l2t_fairseq.benchmark.kernels import pin_kernels
from l2t_fairseq.benchmark.run_segments import measured_run

PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "l2t_fairseq")
STUDENTS = {
    # the Multi30k toy Transformer with Adam, as the benchmark's Transformer rows
    "toy": ["--arch", "transformer_l2t_toy", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "200"],
    # LSTM-1 (256) with plain SGD on sentence-averaged, clipped gradients: the paper's setting
    "lstm1": ["--arch", "lstm", "--encoder-embed-dim", "256", "--encoder-hidden-size", "256",
              "--decoder-embed-dim", "256", "--decoder-hidden-size", "256", "--decoder-out-embed-dim", "256",
              "--dropout", "0.2", "--optimizer", "sgd", "--lr", "1.0", "--sentence-avg", "--clip-norm", "5.0"],
    # the IWSLT'14 recipe's student (41.7M parameters)
    "iwslt": ["--arch", "transformer_iwslt_de_en", "--share-decoder-input-output-embed", "--optimizer", "adam",
              "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt",
              "--warmup-updates", "4000", "--dropout", "0.3", "--weight-decay", "0.0001"],
}
ROWS = ("cross_entropy", "l2t_dlf", "l2t_dlf_frozen")
# the process's peak CUDA memory, printed when fairseq-train returns
PEAK = ("import atexit, sys, torch; atexit.register(lambda: torch.cuda.is_available() and "
        "print('peak_cuda_mib', torch.cuda.max_memory_allocated() / 2**20)); "
        "sys.argv[0] = 'fairseq-train'; from fairseq_cli.train import cli_main; cli_main()")


def train(data, student, row, precision, updates, device, save_dir, teacher, extra, l2t_flags):
    """One run; its log, and its peak RSS in MiB."""
    task = ["--task", "translation", "--criterion", "cross_entropy"] if row == "cross_entropy" else [
        "--task", "l2t_translation", "--criterion", "l2t_dlf", *l2t_flags]
    if row == "l2t_dlf_frozen":
        task += ["--teacher-path", teacher, "--freeze-teacher"]
    # the online run saves once, at its end (its teacher, for the frozen row); the others never
    save = ["--save-interval", "100000", "--no-epoch-checkpoints"] if row == "l2t_dlf" else ["--no-save"]
    command = [
        sys.executable, "-c", PEAK, data, "--user-dir", PLUGIN, *task, *STUDENTS[student], "--max-update",
        str(updates), "--seed", "1", "--disable-validation", *save, "--save-dir", save_dir, "--log-format", "simple",
        "--log-interval", "10", *(["--cpu"] if device == "cpu" else []), *(["--fp16"] if precision == "fp16" else []),
        *extra,
    ]
    os.makedirs(save_dir, exist_ok=True)
    _, peak_rss, log, _ = measured_run(command, os.path.join(save_dir, "train.log"))
    return log, peak_rss


def measure(log, save_dir, after):
    """Seconds per update after update ``after``, refreshes included and not, and the peak CUDA memory in MiB
    (None on the CPU)."""
    intervals = [(int(n), float(u)) for u, n in re.findall(r"train_inner \|.*?ups=([\d.]+).*?num_updates=(\d+)", log)]
    seconds, counted, last = 0.0, 0, 0
    for end, ups in intervals:
        if last >= after and ups > 0:
            seconds += (end - last) / ups
            counted += end - last
        last = end
    if not counted:
        raise RuntimeError(f"no logged interval after update {after}: train longer")
    records = []
    path = os.path.join(save_dir, teacher_log.TEACHER_LOG)
    if os.path.isfile(path):
        # the refresh at update u runs in the train step that takes num_updates from u to u + 1
        records = [r for r in teacher_log.read(path) if after <= r["update"] < last]
    refresh = sum(r["seconds"] for r in records)
    peak = re.search(r"peak_cuda_mib ([\d.]+)", log)
    gaps = [r["replay_gap"] for r in records if "replay_gap" in r]
    return {"steady": seconds / counted, "between": (seconds - refresh) / counted, "updates": counted,
            "refresh_seconds": [r["seconds"] for r in records], "replay_gap": gaps,
            "peak_mib": float(peak.group(1)) if peak else None}


def run_all(args, extra, l2t_flags=()):
    results = []
    for student in args.students:
        for precision in args.precisions:
            for kernels in args.kernels:
                if args.device == "cpu":  # the runs inherit the pins, or their absence
                    pin_kernels(kernels == "pinned")
                with tempfile.TemporaryDirectory() as work:
                    teacher = os.path.join(work, "l2t_dlf", "checkpoint_last.pt")
                    for row in args.rows:
                        save_dir = os.path.join(work, row)
                        log, peak_rss = train(args.data, student, row, precision, args.updates, args.device,
                                              save_dir, teacher, extra, l2t_flags)
                        figures = measure(log, save_dir, args.after)
                        if figures["peak_mib"] is None:  # on the CPU: the process's peak RSS
                            figures["peak_mib"] = peak_rss
                        results.append({"student": student, "row": row, "precision": precision, "kernels": kernels,
                                        **figures})
                        print(f"{student} {precision} {kernels} {row}: {figures}", file=sys.stderr, flush=True)
    return results


KEYS = ("student", "precision", "kernels", "row")


def repetition(results, r):
    """How many runs of ``results`` before ``r`` are its repeats (``--kernels pinned unpinned pinned unpinned``
    trains each run twice)."""
    before = results[: next(i for i, c in enumerate(results) if c is r)]
    return sum(all(c[k] == r[k] for k in KEYS) for c in before)


def twin(results, r, **differing):
    """The run of ``results`` that is ``r`` but for ``differing``, of the same repetition as ``r`` (or the last
    such run, where ``differing`` was repeated fewer times: ``--kernels pinned pinned unpinned``)."""
    matching = [c for c in results if all(c[k] == differing.get(k, r[k]) for k in KEYS)]
    return matching[min(repetition(results, r), len(matching) - 1)]


def table(results):
    lines = ["| student | precision | kernels | row | s/update, steady | x CE | between refreshes, x CE | peak MiB "
             "| pinned x unpinned |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ce = twin(results, r, row="cross_entropy")
        pinning = "-"
        if r["kernels"] == "pinned" and any(c["kernels"] == "unpinned" for c in results):
            pinning = f"{r['steady'] / twin(results, r, kernels='unpinned')['steady']:.3f}"
        lines.append(f"| {r['student']} | {r['precision']} | {r['kernels']} | {r['row']} | {r['steady']:.4f} | "
                     f"{r['steady'] / ce['steady']:.2f} | {r['between'] / ce['steady']:.2f} | {r['peak_mib']:.0f} "
                     f"| {pinning} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("--students", nargs="+", choices=list(STUDENTS), default=["toy"])
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "fp16"), default=["fp32"])
    parser.add_argument("--kernels", nargs="+", choices=("pinned", "unpinned"), default=["unpinned"],
                        help="CPU kernels: the benchmark's pinned ones, the machine's own, or both (their cost ratio)")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--after", type=int, default=100, help="measure the updates after this one (the first "
                        "refresh, at the default --teacher-interval)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-tokens", default="4096", help="the batch size of every run")
    parser.add_argument("--l2t-flags", default="", help="fairseq-train flags of the L2T runs alone (the teacher's)")
    parser.add_argument("--out", help="also write the figures here, as JSON")
    args, extra = parser.parse_known_args(argv)
    if args.rows[0] != "cross_entropy":
        parser.error("--rows: cross_entropy first, the rows are divided by it")
    if "l2t_dlf_frozen" in args.rows and "l2t_dlf" not in args.rows[: args.rows.index("l2t_dlf_frozen")]:
        parser.error("--rows: l2t_dlf_frozen takes l2t_dlf's teacher: list l2t_dlf before it")
    if args.device == "cpu" and "fp16" in args.precisions:
        parser.error("--precisions fp16 needs --device cuda")
    results = run_all(args, ["--max-tokens", args.max_tokens, *extra], shlex.split(args.l2t_flags))
    machine = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"{machine}, torch {torch.__version__}, {args.updates} updates, after update {args.after}")
    print(table(results))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "torch": torch.__version__, "argv": sys.argv[1:], "results": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
