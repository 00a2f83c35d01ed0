"""The benchmark's plots, from its results.json and the L2T runs' teacher logs (in OUT/records/).

    l2t-plots OUT DATA_BIN

- ``dev_bleu.png``: dev BLEU (greedy, from fairseq's --eval-bleu validation) over updates, every row, every seed;
- ``phi.png``: the teacher's coefficient Phi_t[w] over training for the most frequent target words and for
  words of frequency rank 100, 1,000 and 5,000 (the paper's Figure 4 analogue);
- ``phi_frequency.png``: Phi of every target word against its training frequency at the first, middle and last
  refresh: which words did the teacher favour?
- ``teacher_steps.png``: the expected-BLEU dev measure M~ at each teacher step (Figure 3 analogue) and the step's
  lookahead gain (M~ after the step minus before, same batches and candidates: positive = the step improved what
  it optimizes);
- ``phi_spread.png``: relative spread (std / mean) of Phi over the target words, overall and by frequency band;
- ``teacher.md``: what the online teachers learned, against a null (:mod:`l2t_fairseq.benchmark.teacher_report`);
- ``phi_noise.png`` (data prepared with ``--noise``): the mean coefficient of the word types that occur only in
  corrupted training targets over that of the others, and that of a corrupted target's tokens over a clean
  target's (:mod:`l2t_fairseq.benchmark.noise_report`).
"""

import argparse
import glob
import json
import os
import re
import sys

import matplotlib
import torch
from fairseq.data import Dictionary, data_utils

from l2t_fairseq import teacher_log
from l2t_fairseq.benchmark.noise_report import TargetNoise, noise_lines
from l2t_fairseq.benchmark.teacher_report import TITLE as TEACHER_TITLE
from l2t_fairseq.benchmark.teacher_report import learned
from l2t_fairseq.diagnostics import BANDS, band_name, frequency_ranks, target_frequency
from l2t_fairseq.errors import UsageError
from l2t_fairseq.figures import save_figure
from l2t_fairseq.whole_files import write_whole

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FREQUENT = 5
FOLLOWED_RANKS = (100, 1000, 5000)


def training_index(data):
    """One index file of the binarized training data in ``data``."""
    indexes = glob.glob(os.path.join(data, "train.*-*.*.idx"))
    if not indexes:
        raise UsageError(f"{data}: no binarized training data (train.SRC-TGT.TGT.idx)")
    return indexes[0]


def training_targets(data):
    """The target dictionary and each word's frequency in the binarized training targets."""
    pair = re.search(r"train\.([^.]+)\.[^.]+\.idx$", training_index(data)).group(1)
    target = pair.split("-")[1]
    dictionary = Dictionary.load(os.path.join(data, f"dict.{target}.txt"))
    prefix = os.path.join(data, f"train.{pair}.{target}")
    dataset = data_utils.load_indexed_dataset(prefix, dictionary)
    return dictionary, target_frequency(dataset, len(dictionary)), prefix


def teacher_logs(out, row="l2t_dlf"):
    """Each seed's refresh records, and (record, Phi) of the refreshes whose whole Phi was kept."""
    logs, phis = {}, {}
    for path in sorted(glob.glob(os.path.join(out, "records", f"{row}-seed*.teacher.jsonl"))):
        seed = re.search(r"seed(\d+)", path).group(1)
        logs[seed], phis[seed] = teacher_log.read(path), teacher_log.coefficients(path)
    return logs, phis


def save(fig, out, name):
    fig.tight_layout()
    save_figure(fig, os.path.join(out, name))


def plot_dev_bleu(out, runs):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {}
    for by_row in runs.values():
        for row, record in by_row.items():
            if not record["dev_bleu_curve"]:
                continue
            updates, bleu = zip(*record["dev_bleu_curve"])
            line = ax.plot(updates, bleu, color=colors.get(row), alpha=0.8, label=None if row in colors else row)
            colors.setdefault(row, line[0].get_color())
    ax.set_xlabel("student updates")
    ax.set_ylabel("dev BLEU (greedy)")
    ax.legend(fontsize=8)
    ax.set_title("Dev BLEU over training (one line per seed)")
    save(fig, out, "dev_bleu.png")


def plot_phi(out, dictionary, ranked, phis):
    seed, rows = next(iter(phis.items()))
    followed = ranked[:FREQUENT].tolist() + [ranked[r - 1].item() for r in FOLLOWED_RANKS if r <= len(ranked)]
    updates = [r["update"] for r, _ in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rank = {word: i + 1 for i, word in enumerate(ranked.tolist())}
    for i in followed:
        ax.plot(updates, [phi[i] for _, phi in rows], marker=".", label=f"{dictionary[i]!r} (rank {rank[i]})")
    ax.set_xlabel("student updates")
    ax.set_ylabel("Phi_t[w]")
    ax.set_title(f"Teacher's coefficients over training (seed {seed})")
    ax.legend(fontsize=8)
    save(fig, out, "phi.png")


def plot_phi_frequency(out, frequency, ranked, phis):
    seed, rows = next(iter(phis.items()))
    picks = [rows[0], rows[len(rows) // 2], rows[-1]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    counts = frequency[ranked].double().log10()
    for (record, phi), color in zip(picks, ("tab:blue", "tab:orange", "tab:green")):
        phi = torch.from_numpy(phi)[ranked]
        ax.scatter(counts, phi, s=4, alpha=0.5, color=color, label=f"update {record['update']}")
    ax.set_xlabel("log10 frequency of the target word in the training data")
    ax.set_ylabel("Phi[w]")
    ax.set_title(f"What the teacher favours (seed {seed})")
    ax.legend(markerscale=3)
    save(fig, out, "phi_frequency.png")


def plot_teacher_steps(out, logs):
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for seed, records in logs.items():
        steps = [r for r in records if "dev_expected_bleu" in r]
        label = f"seed {seed}"
        top.plot([r["update"] for r in steps], [r["dev_expected_bleu"] for r in steps], marker="o", label=label)
        gains = [r for r in steps if "lookahead_gain" in r]
        bottom.plot([r["update"] for r in gains], [r["lookahead_gain"] for r in gains], marker="o", label=label)
    top.set_ylabel("M~ on the dev batch (before the step)")
    top.set_title("The teacher's objective and what each step gained on it")
    bottom.axhline(0, color="gray", linewidth=0.8)
    bottom.set_ylabel("lookahead gain of the step")
    bottom.set_xlabel("student updates")
    top.legend(fontsize=8)
    save(fig, out, "teacher_steps.png")


def plot_phi_spread(out, ranked, logs, phis):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for seed, records in logs.items():
        updates = [r["update"] for r in records]
        spread = []
        for _, phi in phis[seed]:
            phi = torch.from_numpy(phi).double()[ranked]
            spread.append((phi.std() / phi.mean()).item())
        line = ax.plot([r["update"] for r, _ in phis[seed]], spread, marker=".",
                       label=f"all target words, seed {seed}")
        for (first, last), style in zip(BANDS, (":", "--", "-.")):
            name = band_name(first, last)
            values = [r["phi_bands"][name]["std"] / r["phi_bands"][name]["mean"] if name in r.get("phi_bands", {})
                      else None for r in records]
            if any(v is not None for v in values):
                ax.plot(updates, values, style, color=line[0].get_color(), alpha=0.7,
                        label=f"ranks {name}, seed {seed}")
    ax.set_xlabel("student updates")
    ax.set_ylabel("std / mean of Phi")
    ax.set_title("How much the teacher tells words apart")
    ax.legend(fontsize=7)
    save(fig, out, "phi_spread.png")


def plot_phi_noise(out, phis, noise):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for seed, rows in phis.items():
        updates = [r["update"] for r, _ in rows]
        line = ax.plot(updates, [noise.word_ratio(phi) for _, phi in rows], marker=".",
                       label=f"noise-only types, seed {seed}")
        ax.plot(updates, [noise.token_ratio(phi) for _, phi in rows], "--", color=line[0].get_color(),
                label=f"corrupted targets' tokens, seed {seed}")
    ax.axhline(1, color="gray", linewidth=0.8)
    ax.set_xlabel("student updates")
    ax.set_ylabel("mean Phi over that of the clean side")
    ax.set_title(f"Did the teacher find the noise? ({len(noise.only)} word types only in corrupted targets)")
    ax.legend(fontsize=7)
    save(fig, out, "phi_noise.png")


def plot_all(out, data):
    with open(os.path.join(out, "results.json")) as f:
        runs = json.load(f)["runs"]
    plot_dev_bleu(out, runs)
    logs, phis = teacher_logs(out)
    if logs:
        dictionary, frequency, prefix = training_targets(data)
        ranked = frequency_ranks(frequency)
        plot_phi(out, dictionary, ranked, phis)
        plot_phi_frequency(out, frequency, ranked, phis)
        plot_teacher_steps(out, logs)
        plot_phi_spread(out, ranked, logs, phis)
        commands = {seed: by_row["l2t_dlf"].get("command", "") for seed, by_row in runs.items() if "l2t_dlf" in by_row}
        lines = learned(logs, phis, commands, dictionary, frequency)
        noise = TargetNoise.of(data, dictionary, prefix, frequency)
        if noise is not None and len(noise.only):
            plot_phi_noise(out, phis, noise)
            lines += noise_lines(phis, noise, dictionary)
        write_whole(os.path.join(out, "teacher.md"), "\n".join([TEACHER_TITLE, "", *lines]) + "\n")


def main(argv=None):
    """``l2t-plots OUT DATA_BIN``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the benchmark's output folder (results.json, records/)")
    parser.add_argument("data", help="its binarized data (the training targets' frequencies)")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.out, "results.json")):
        raise UsageError(f"{args.out}: no results.json (OUT is the folder l2t-benchmark --out wrote)")
    training_index(args.data)
    plot_all(args.out, args.data)


if __name__ == "__main__":
    sys.exit(main())
