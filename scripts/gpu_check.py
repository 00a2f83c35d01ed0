"""The GPU check: one command, one markdown report of what the teacher does on this machine's GPU.

    python scripts/gpu_check.py DATA_BIN OUT_DIR [--cpu]

DATA_BIN is a binarized corpus (``examples/multi30k/prepare.sh``'s ``bin/``).  The report, ``OUT_DIR/report.md``
(also printed), holds, each step with its own time limit, a failed step reported and the next one run:

1. the versions (Python, torch, CUDA, the GPU, fairseq, this plugin);
2. the CUDA tests (``pytest -k cuda``);
3. the cost table (``scripts/bench_cost.py``): cross-entropy, the online and the frozen teacher, for the toy
   Transformer, LSTM-1 with SGD and ``transformer_iwslt_de_en``, in fp32 and ``--fp16``, with peak memory;
4. U = 100 against U = 20 (K = 100), on ``transformer_iwslt_de_en``: seconds per refresh, peak memory;
5. a resume from a checkpoint saved inside a window: saved at update 90 (the window of the refresh at 100 opened
   at 80), resumed, refreshed at 100 from the restored updates, against the same run uninterrupted;
6. fp16 overflows: fairseq's real overflows (``--fp16-init-scale 2**24``) and ``--amp`` retries, the recorded
   update checked against the batches the student took (``tests/test_replay.py``'s CUDA variant).

``--cpu`` runs the same steps on the CPU at a toy size (a few dozen updates, the toy Transformer alone, fp32),
so that a test can run the whole script where no GPU is; there the CUDA tests skip and step 6 runs the
out-of-memory variant of the same retry.
"""

import argparse
import glob
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_cost  # noqa: E402 - a script beside this one

from l2t_fairseq import teacher_log  # noqa: E402

# the sizes: GPU (8 minutes in all on an H200) and --cpu (a toy's minute)
# interval: K; unroll: U (and the long unroll's); stop/resume: the resumed run's updates; cheap: cheaper refreshes
SIZES = {
    "cuda": {"students": ["toy", "lstm1", "iwslt"], "precisions": ["fp32", "fp16"], "updates": 300, "interval": 100,
             "unroll": 20, "long_unroll": 100, "unroll_student": "iwslt", "unroll_updates": 250, "stop": 90,
             "resume": 110, "cheap": [], "batch": ["--max-tokens", "4096"]},
    "cpu": {"students": ["toy"], "precisions": ["fp32"], "updates": 30, "interval": 10, "unroll": 4, "long_unroll": 8,
            "unroll_student": "toy", "unroll_updates": 25, "stop": 8, "resume": 12,
            "cheap": ["--teacher-dev-max-tokens", "256", "--teacher-candidates", "2"],
            "batch": ["--max-tokens", "1000"]},
}


def teacher(size, unroll=None):
    return ["--teacher-interval", str(size["interval"]), "--unroll-steps", str(unroll or size["unroll"]),
            *size["cheap"]]


def versions(device):
    rows = {"python": platform.python_version(), "torch": torch.__version__,
            "CUDA": torch.version.cuda or "none", "device": torch.cuda.get_device_name() if device == "cuda" else
            (platform.processor() or platform.machine())}
    for package in ("fairseq-fixed", "l2t-fairseq", "numpy", "sacrebleu"):
        try:
            rows[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            rows[package] = "not installed"
    return "\n".join(f"- {name}: {value}" for name, value in rows.items())


def pytest(selection, out, name, timeout):
    workers = ["-n", "4"] if torch.cuda.is_available() else []
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, "-rs", "-k", selection,
               os.path.join(REPO, "tests")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=timeout)
    with open(os.path.join(out, f"{name}.log"), "w") as f:
        f.write(result.stdout + result.stderr)
    summary = [line for line in result.stdout.splitlines() if " passed" in line or " failed" in line
               or " skipped" in line or "error" in line]
    if result.returncode not in (0, 5):
        raise RuntimeError(f"pytest -k '{selection}' failed: {summary[-1:] or result.stdout[-1500:]}")
    return f"`pytest -k '{selection}'`: {summary[-1] if summary else 'no summary'}"


def cost(data, device, size, out):
    args = argparse.Namespace(data=data, students=size["students"], rows=list(bench_cost.ROWS),
                              precisions=size["precisions"], updates=size["updates"], after=size["interval"],
                              device=device, kernels=["unpinned"])
    results = bench_cost.run_all(args, size["batch"], teacher(size))
    with open(os.path.join(out, "cost.json"), "w") as f:
        json.dump(results, f, indent=1)
    return bench_cost.table(results)


def l2t_run(data, device, size, student, save_dir, *flags):
    command = [sys.executable, "-m", "fairseq_cli.train", data, "--user-dir", bench_cost.PLUGIN, "--task",
               "l2t_translation", "--criterion", "l2t_dlf", *bench_cost.STUDENTS[student], *size["batch"],
               "--seed", "1", "--disable-validation", "--save-dir", save_dir, "--log-format", "simple",
               "--log-interval", "10", *(["--cpu"] if device == "cpu" else []), *flags]
    _, peak_rss, log, _ = bench_cost.measured_run(command, os.path.join(save_dir + ".log"))
    return log, peak_rss


def refreshes(save_dir):
    return teacher_log.read(os.path.join(save_dir, teacher_log.TEACHER_LOG))


def long_unroll(data, device, size, work):
    rows = ["| U | K | seconds per refresh | peak MiB |", "|---|---|---|---|"]
    for unroll in (size["unroll"], size["long_unroll"]):
        save_dir = os.path.join(work, f"unroll{unroll}")
        log, peak_rss = l2t_run(data, device, size, size["unroll_student"], save_dir, "--max-update",
                                str(size["unroll_updates"]), "--no-save", *teacher(size, unroll))
        peak = bench_cost.measure(log, save_dir, 0)["peak_mib"] or peak_rss
        seconds = [r["seconds"] for r in refreshes(save_dir) if r.get("workers")]
        if not seconds:
            raise RuntimeError(f"U={unroll}: no teacher step was taken")
        rows.append(f"| {unroll} | {size['interval']} | {sum(seconds) / len(seconds):.2f} | {peak:.0f} |")
    return "\n".join(rows)


def resume_in_window(data, device, size, work):
    """A run that saved a checkpoint inside the window of its next refresh, resumed from it, against the same run
    uninterrupted: the same records (bit for bit on the CPU; on a GPU, fairseq's kernels need not be
    deterministic)."""
    flags = [*teacher(size), "--max-update", str(size["resume"]), "--no-epoch-checkpoints"]
    whole, cut = os.path.join(work, "uninterrupted"), os.path.join(work, "resumed")
    l2t_run(data, device, size, "toy", whole, *flags, "--save-interval-updates", str(size["stop"]))
    (checkpoint,) = glob.glob(os.path.join(whole, f"checkpoint_*_{size['stop']}.pt"))
    os.makedirs(cut)
    shutil.copy(checkpoint, os.path.join(cut, "checkpoint_last.pt"))
    log, _ = l2t_run(data, device, size, "toy", cut, *flags)
    if "Loaded checkpoint" not in log:
        raise RuntimeError("the second run did not resume")
    interval = size["interval"]
    resumed, uninterrupted = (next(r for r in refreshes(d) if r["update"] == interval) for d in (cut, whole))
    if resumed.get("workers") != 1 or resumed.get("skipped"):
        raise RuntimeError(f"the refresh at update {interval} took no step from the restored window: {resumed}")
    same = resumed["teacher_digest"] == uninterrupted["teacher_digest"]
    if device == "cpu" and not same:
        raise RuntimeError(f"the resumed run's teacher differs from the uninterrupted one's: {resumed} {uninterrupted}")
    return (f"saved at update {size['stop']}, resumed: the refresh at update {interval} took its teacher step from "
            f"the restored window (hypergradient norm {resumed['hypergrad_norm']:.6g}; uninterrupted: "
            f"{uninterrupted['hypergrad_norm']:.6g}); the teacher after it is "
            f"{'bit for bit' if same else 'not bit for bit'} the uninterrupted run's")


def fp16_overflows(data, device, size, work, out):
    if device == "cpu":
        return pytest("attempted_again", out, "overflow", 600)
    save_dir = os.path.join(work, "overflow")
    log, _ = l2t_run(data, device, size, "toy", save_dir, "--max-update", "150", "--no-save", "--fp16",
                     "--fp16-init-scale", str(2**24))
    overflows = log.count("gradient overflow detected")
    if not overflows:
        raise RuntimeError("no fp16 overflow: raise --fp16-init-scale")
    steps = [r for r in refreshes(save_dir) if r.get("workers")]
    tested = pytest("overflow", out, "overflow", 600)
    return f"{overflows} overflows in 150 updates, {len(steps)} teacher steps taken after them; {tested}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--cpu", action="store_true", help="the same steps on the CPU, at a toy size")
    args = parser.parse_args(argv)
    device = "cpu" if args.cpu else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: error: no CUDA device (use --cpu for the CPU variant)")
    size = SIZES[device]
    os.makedirs(args.out, exist_ok=True)
    steps = [
        ("Versions", lambda work: versions(device)),
        ("CUDA tests", lambda work: pytest("cuda", args.out, "cuda_tests", 300)),
        ("Cost per update, against cross-entropy", lambda work: cost(args.data, device, size, args.out)),
        ("A long unroll", lambda work: long_unroll(args.data, device, size, work)),
        ("Resume from a checkpoint inside a window", lambda work: resume_in_window(args.data, device, size, work)),
        ("fp16 overflows", lambda work: fp16_overflows(args.data, device, size, work, args.out)),
    ]
    report, failed = [f"# GPU check ({device})", "", f"`{' '.join(['scripts/gpu_check.py', *sys.argv[1:]])}`, "
                      f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"], []
    for title, step in steps:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            try:
                body = step(work)
            except Exception as e:  # noqa: BLE001 - reported, and the next step runs
                body, failed = f"FAILED: {type(e).__name__}: {e}", [*failed, title]
        report += ["", f"## {title} ({time.perf_counter() - start:.0f} s)", "", body]
        print(f"{title}: {'FAILED' if title in failed else 'ok'} in {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
    report += ["", f"FAILED: {', '.join(failed)}" if failed else "All steps passed."]
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
