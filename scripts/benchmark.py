"""Cross-entropy, label smoothing, MRT, softmax-margin and L2T-DLF on the same student, data, budget and seeds.

    .venv/bin/python scripts/benchmark.py                 # CPU preset: small IWSLT'14 split, tiny Transformer
    .venv/bin/python scripts/benchmark.py --full          # the paper's setup on the full IWSLT'14 split, on a GPU

Every loss trains ``--max-update`` student updates per seed with the same
architecture, optimizer, schedule and batches.  The sequence-level baselines
follow Edunov et al. (2018): they fine-tune the cross-entropy run of the same
seed from its checkpoint at ``--sequence-start`` (90%) of the budget, so their time
is the cross-entropy part plus their own.  Each run decodes the test set with
``fairseq-generate`` (beam 5, BPE removed; fairseq's tokenized BLEU4, as the
paper reports).  Writes ``results.json``, ``results.md`` and three plots to
``--out``: dev BLEU over updates, the teacher's coefficients over training,
and the dev measure along the teacher's optimization.
"""

import argparse
import datetime
import glob
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

from plots import plot_all

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
PLUGIN = os.path.join(REPO, "l2t_fairseq")

LOSSES = {
    "cross_entropy": ["--task", "translation", "--criterion", "cross_entropy"],
    "label_smoothed": [
        "--task", "translation", "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"
    ],
    "sequence_risk": ["--task", "translation", "--criterion", "sequence_risk"],
    "softmax_margin": ["--task", "translation", "--criterion", "softmax_margin"],
    "l2t_dlf": ["--task", "l2t_translation", "--criterion", "l2t_dlf"],
}
SEQUENCE_LEVEL = ("sequence_risk", "softmax_margin")

PRESETS = {
    "cpu": {
        "data": "runs/iwslt14-small/bin",
        "prepare": ["--shared", os.path.join(REPO, "..", "shared", "data", "iwslt14"), "--out", "runs/iwslt14-small"],
        "max_update": 300,
        "train": [
            "--arch", "transformer_l2t_toy", "--optimizer", "adam", "--adam-betas", "(0.9, 0.98)", "--lr", "3e-3",
            "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "100", "--max-tokens", "2048",
            "--validate-interval-updates", "100", "--max-valid-steps", "4", "--cpu",
        ],
        "generate": ["--cpu", "--batch-size", "128"],
    },
    "full": {
        "data": "data/iwslt14/bin",
        "prepare": ["--out", "data/iwslt14"],
        "max_update": 50000,
        "train": [
            "--arch", "transformer_iwslt_de_en", "--share-decoder-input-output-embed", "--optimizer", "adam",
            "--adam-betas", "(0.9, 0.98)", "--lr", "5e-4", "--lr-scheduler", "inverse_sqrt", "--warmup-updates",
            "4000", "--dropout", "0.3", "--weight-decay", "0.0001", "--max-tokens", "4096",
            "--validate-interval-updates", "2000",
        ],
        "generate": ["--batch-size", "128"],
    },
}
# dev BLEU at every validation: greedy decoding, BPE removed, tokenized (as the test BLEU)
EVAL_BLEU = [
    "--eval-bleu", "--eval-bleu-args", '{"beam": 1, "max_len_a": 1.2, "max_len_b": 10}', "--eval-tokenized-bleu",
    "--eval-bleu-remove-bpe",
]

# a child that runs fairseq-train and reports its peak CUDA memory (0 on the CPU)
TRAIN_CHILD = (
    "import sys, torch; from fairseq_cli.train import cli_main; sys.argv = ['fairseq-train'] + sys.argv[1:]; "
    "cli_main(); print('PEAK_CUDA_BYTES', torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0)"
)


def measured_run(command, log_path):
    """Runs ``command``; returns (wall seconds, peak RSS in MiB, stdout).  Fails loudly with the log's tail."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    output = open(log_path).read()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark: error: {shlex.join(command)} failed; see {log_path}:\n{output[-2000:]}")
    return wall, usage.ru_maxrss / 1024, output


def train(name, seed, args, preset, run_dir, finetune_from=None, updates=None):
    """One fairseq-train run; returns its measurements and its dev BLEU curve."""
    os.makedirs(run_dir, exist_ok=True)
    updates = updates or args.max_update
    command = [
        sys.executable, "-c", TRAIN_CHILD, args.data, "--user-dir", PLUGIN, *LOSSES[name], *preset["train"],
        *EVAL_BLEU, "--max-update", str(updates), "--seed", str(seed), "--save-dir", run_dir,
        "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "10",
    ]
    if name == "cross_entropy":  # the sequence-level baselines start from this checkpoint
        command += ["--save-interval-updates", str(args.sequence_start_update), "--keep-interval-updates", "1"]
    if name == "l2t_dlf":
        command += shlex.split(args.l2t_flags)
    if finetune_from:
        command += ["--finetune-from-model", finetune_from, "--lr-scheduler", "fixed", "--lr", str(args.finetune_lr)]
    wall, rss, output = measured_run(command, os.path.join(run_dir, "train.log"))
    train_seconds = float(re.findall(r"done training in ([0-9.]+) seconds", output)[-1])
    peak_cuda = int(re.findall(r"PEAK_CUDA_BYTES (\d+)", output)[-1]) / 2**20
    curve = [
        (int(m.group(2)), float(m.group(1)))
        for m in re.finditer(r"valid on 'valid' subset \|.*?\| bleu ([0-9.]+) \|.*?num_updates (\d+)", output)
    ]
    return {"train_seconds": train_seconds, "updates": updates, "peak_rss_mib": rss, "peak_cuda_mib": peak_cuda,
            "wall_seconds": wall}, curve


def test_bleu(args, preset, run_dir):
    command = [
        os.path.join(BIN, "fairseq-generate"), args.data, "--user-dir", PLUGIN, "--path",
        os.path.join(run_dir, "checkpoint_last.pt"), "--gen-subset", "test", "--beam", "5", "--remove-bpe",
        "--max-len-a", "1.2", "--max-len-b", "10",
        *preset["generate"],
    ]
    _, _, output = measured_run(command, os.path.join(run_dir, "generate.log"))
    return float(re.search(r"BLEU4 = ([0-9.]+)", output).group(1))


def benchmark_seed(seed, args, preset):
    """All losses for one seed: {loss: result}, {loss: dev curve}."""
    results, curves = {}, {}
    for name in args.losses:
        run_dir = os.path.join(args.out, f"{name}-seed{seed}")
        print(f"[{datetime.datetime.now():%H:%M:%S}] {name}, seed {seed}", flush=True)
        if name in SEQUENCE_LEVEL:
            ce = results["cross_entropy"]
            ce_dir = os.path.join(args.out, f"cross_entropy-seed{seed}")
            start = glob.glob(os.path.join(ce_dir, f"checkpoint_*_{args.sequence_start_update}.pt"))[0]
            result, curve = train(name, seed, args, preset, run_dir, finetune_from=start,
                                  updates=args.max_update - args.sequence_start_update)
            # the budget is the whole run: the cross-entropy part, prorated from the cross-entropy run, plus this one
            result["train_seconds"] += ce["train_seconds"] * args.sequence_start_update / ce["updates"]
            result["updates"] = args.max_update
            result["peak_rss_mib"] = max(result["peak_rss_mib"], ce["peak_rss_mib"])
            result["peak_cuda_mib"] = max(result["peak_cuda_mib"], ce["peak_cuda_mib"])
            curve = [point for point in curves["cross_entropy"] if point[0] <= args.sequence_start_update] + [
                (u + args.sequence_start_update, b) for u, b in curve
            ]
        else:
            result, curve = train(name, seed, args, preset, run_dir)
        result["test_bleu"] = test_bleu(args, preset, run_dir)
        result["seconds_per_update"] = result["train_seconds"] / result["updates"]
        results[name], curves[name] = result, curve
        print(f"    test BLEU {result['test_bleu']:.2f}, {result['seconds_per_update'] * 1000:.0f} ms/update, "
              f"peak RSS {result['peak_rss_mib']:.0f} MiB", flush=True)
    return results, curves


def summarize(runs, losses):
    """Mean and std over seeds, and ratios to cross-entropy measured in the same run."""
    summary = {}
    for name in losses:
        rows = [run[name] for run in runs]

        def stats(key):
            values = [row[key] for row in rows]
            return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

        summary[name] = {key: stats(key) for key in rows[0]}
    if "cross_entropy" in summary:
        base = summary["cross_entropy"]
        for name in losses:
            for key in ("seconds_per_update", "train_seconds", "peak_rss_mib", "peak_cuda_mib"):
                summary[name][f"{key}_ratio"] = summary[name][key][0] / base[key][0] if base[key][0] else None
    return summary


def markdown(summary, meta):
    lines = [
        f"Measured {meta['date']} on {meta['machine']}; command: `{meta['command']}`; data: `{meta['data']}`; "
        f"seeds {meta['seeds']}; {meta['max_update']} updates per run.",
        "",
        "| loss | test BLEU (mean ± std) | s/update | x CE | total train s | x CE | peak RSS MiB | x CE "
        "| peak CUDA MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        def ratio(key):
            value = s.get(f"{key}_ratio")
            return f"{value:.2f}" if value is not None else "n/a"

        lines.append(
            f"| {name} | {s['test_bleu'][0]:.2f} ± {s['test_bleu'][1]:.2f} | {s['seconds_per_update'][0]:.3f} | "
            f"{ratio('seconds_per_update')} | {s['train_seconds'][0]:.0f} | {ratio('train_seconds')} | "
            f"{s['peak_rss_mib'][0]:.0f} | {ratio('peak_rss_mib')} | {s['peak_cuda_mib'][0]:.0f} |"
        )
    lines.append("| actor-critic | not built | | | | | | | |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the paper's setup on the full IWSLT'14 split (GPU)")
    parser.add_argument("--data", help="binarized data (default: the preset's, built with prepare.sh if missing)")
    parser.add_argument("--out", default="runs/benchmark")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--losses", nargs="+", choices=list(LOSSES), default=list(LOSSES))
    parser.add_argument("--max-update", type=int, help="student updates per run (default: the preset's)")
    parser.add_argument("--l2t-flags", default="", help="extra fairseq-train flags of the L2T-DLF runs, "
                        "e.g. '--teacher-interval 50' (default: the plugin's defaults)")
    parser.add_argument("--sequence-start", type=float, default=0.9,
                        help="fraction of the budget trained with cross-entropy before MRT/softmax-margin fine-tuning")
    parser.add_argument("--finetune-lr", type=float, help="fixed lr of the sequence-level fine-tuning "
                        "(default: a tenth of the preset's peak lr)")
    args = parser.parse_args(argv)
    preset = PRESETS["full" if args.full else "cpu"]
    args.max_update = args.max_update or preset["max_update"]
    args.sequence_start_update = max(1, int(args.sequence_start * args.max_update))
    args.finetune_lr = args.finetune_lr or float(preset["train"][preset["train"].index("--lr") + 1]) / 10
    if any(name in SEQUENCE_LEVEL for name in args.losses) and "cross_entropy" not in args.losses:
        parser.error("--losses: sequence_risk and softmax_margin fine-tune the cross_entropy run; include it")
    args.losses = [name for name in LOSSES if name in args.losses]  # cross_entropy first
    if args.data is None:
        args.data = preset["data"]
        if not os.path.isdir(os.path.join(REPO, args.data)):
            prepare = os.path.join(REPO, "examples", "iwslt14", "prepare.sh")
            subprocess.run([prepare, *preset["prepare"]], check=True, cwd=REPO)
    elif not os.path.isfile(os.path.join(args.data, "dict.en.txt")):
        parser.error(f"--data {args.data}: no dict.en.txt (not a fairseq-preprocess folder)")
    os.makedirs(args.out, exist_ok=True)

    runs, curves = [], []
    for seed in args.seeds:
        result, curve = benchmark_seed(seed, args, preset)
        runs.append(result)
        curves.append(curve)
    summary = summarize(runs, args.losses)
    meta = {
        "date": f"{datetime.date.today()}", "command": shlex.join(["scripts/benchmark.py", *(argv or sys.argv[1:])]),
        "data": args.data, "seeds": args.seeds, "max_update": args.max_update,
        "sequence_start_update": args.sequence_start_update, "finetune_lr": args.finetune_lr,
        "l2t_flags": args.l2t_flags,
        "machine": f"{os.cpu_count()} CPU cores" + (", GPU" if args.full else ", CPU only"),
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": summary, "runs": dict(zip(map(str, args.seeds), runs)),
                   "dev_bleu_curves": dict(zip(map(str, args.seeds), curves))}, f, indent=1)
    table = markdown(summary, meta)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table)
    print(table)
    plot_all(args.out, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
