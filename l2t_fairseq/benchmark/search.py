"""Choosing the teacher's settings on the validation set only: dev BLEU of each configuration, never test BLEU.

    l2t-search                           # every configuration, seed 1, Multi30k
    l2t-search --configs past_u20 cross_entropy --seeds 1 2

Each configuration trains the benchmark's student (same preset, budget, batches and
schedule as ``l2t-benchmark``) and is scored by its best greedy dev BLEU over
its validations; the test set is not decoded.  Runs are recorded and resumed exactly
as the benchmark's are.  Writes ``search.md`` and ``search.json`` to ``--out``
(default ``docs/benchmark/PRESET``, run records in its ``search-records/``): dev BLEU against cross-entropy of the
same seeds, time against cross-entropy, and what the teacher did (relative spread of
``Phi`` at the end, mean lookahead gain, share of steps with a positive gain).
"""

import argparse
import collections
import datetime
import json
import os
import shlex
import statistics
import sys

import torch

from l2t_fairseq import teacher_log
from l2t_fairseq.benchmark.cli import add_run_arguments, prepared_data, resolved_preset
from l2t_fairseq.benchmark.cli import cli as benchmark_cli
from l2t_fairseq.benchmark.command_lines import same_run_record, validation_update
from l2t_fairseq.benchmark.presets import L2T, ROWS
from l2t_fairseq.benchmark.report import converged_budget, convergence, spread
from l2t_fairseq.benchmark.runner import Benchmark

# the plugin's defaults before this search chose past_u20_alpha0.5's: the U = 5 updates re-applied from the current
# weights, q ~ p (the configurations built on it were measured then; their records' commands lack these flags)
CURRENT_U5 = L2T + ["--unroll-start", "current", "--unroll-steps", "5", "--teacher-alpha", "1.0"]
PAST = L2T + ["--unroll-start", "past", "--unroll-steps", "20"]
PAST_U20 = PAST + ["--teacher-alpha", "1.0"]
RELATIVE = ["--unroll-optimizer", "adam", "--teacher-parametrization", "exp", "--phi-normalization", "token_mean"]
# flags: the row's loss flags; teacher_from: the configuration whose learned teacher this one starts from;
# student: flags that replace the preset's (e.g. another learning rate), put last on the command line;
# start: the fraction of the budget trained with cross-entropy first (the student fine-tunes the cross-entropy run
# of its seed from its checkpoint there, at the learning rate that run had reached, held fixed), None: from scratch
Config = collections.namedtuple("Config", "flags teacher_from student start", defaults=(None, (), None))
# configurations of earlier searches that never ran to a record (a linear SGD teacher, the relative teacher at
# K = 20 and 50, U = 10, the SGD unroll with relative coefficients) are left out: their commands are in git history
CONFIGS = {
    "cross_entropy": Config(ROWS["cross_entropy"]),
    "label_smoothed": Config(ROWS["label_smoothed"]),
    # a refresh costs about 35 student updates here: K = 100 keeps the run within 1.5x cross-entropy's time
    "adam_relative_k100": Config(CURRENT_U5 + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.1"]),
    "adam_relative_k100_lr0.03": Config(CURRENT_U5 + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.03"]),
    "adam_relative_k100_lr0.3": Config(CURRENT_U5 + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.3"]),
    # the paper's two phases: the teacher adam_relative_k100 learned (on the next seed, cyclically: with one seed,
    # the same one) teaches a new student, frozen
    "adam_relative_k100_frozen": Config(CURRENT_U5 + RELATIVE + ["--teacher-interval", "100", "--freeze-teacher"],
                                        "adam_relative_k100"),
    # the default's teacher (lr 0.03) learning on over a second student
    "adam_relative_k100_lr0.03_continued": Config(
        CURRENT_U5 + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.03"], "adam_relative_k100_lr0.03"
    ),
    # the online protocol (the U updates before the refresh re-applied from the current weights)
    "current_u5": Config(CURRENT_U5),
    # Algorithm 1's reverse of the real steps: from where the student took them, over 20 updates, and with the
    # authors' replayed windows (5 teacher steps per refresh)
    "past_u20": Config(PAST_U20),
    "past_u20_m5": Config(PAST_U20 + ["--teacher-replays", "5"]),
    # Algorithm 1 at a longer horizon: every update of the run reversed once, in windows of 100
    "past_u100": Config(L2T + ["--unroll-start", "past", "--unroll-steps", "100", "--teacher-alpha", "1.0"]),
    # the authors' --combine_loss: half NLL, half the learned loss
    "past_u20_nll0.5": Config(PAST_U20 + ["--nll-weight", "0.5"]),
    # a teacher that moves faster, and one whose dev measure weighs the candidates more evenly
    "past_u20_lr0.1": Config(PAST_U20 + ["--teacher-lr", "0.1"]),
    "past_u20_alpha0.5": Config(PAST + ["--teacher-alpha", "0.5"]),  # the plugin's defaults
    # the authors' start: a student pretrained with cross-entropy (here the cross-entropy run of the same seed,
    # from half-way), taught for the rest of the budget; with the coefficients at 1/ln|V| or, as theirs, at 1
    "past_u20_from_ce": Config(PAST_U20, start=0.5),
    # their control: cross-entropy fine-tuned from the same checkpoint in the same way (a fresh optimizer state,
    # the learning rate held fixed)
    "cross_entropy_from_ce": Config(ROWS["cross_entropy"], start=0.5),
    "past_u20_from_ce_phi1": Config(PAST_U20 + ["--phi-init", "1"], start=0.5),
    # Algorithm 1 across students: past_u20's teacher and its Adam state (from the next seed's run) go on learning
    # over a second student, then teach a third one frozen
    "past_u20_second_student": Config(PAST_U20 + ["--continue-teacher"], "past_u20"),
    "past_u20_trained_frozen": Config(L2T + ["--freeze-teacher"], "past_u20_second_student"),
    # the field's fixed token weighting (the benchmark rows token_adaptive and loss_truncation), on a grid built on
    # the papers' values: Gu et al.'s two forms, A = e - 1 as their code, T around the authors' 3.5 for the
    # exponential form (the chi-square form's weight peaks at a count of 2 / T medians); Kang & Hashimoto's drop
    # fraction at their summarization value 0.4 and below it (a fifth of the noisy presets' pairs are corrupted)
    **{f"token_adaptive_{form}_t{t}": Config(ROWS["cross_entropy"][:3] + ["token_adaptive", "--adaptive-form", form,
                                                                         "--adaptive-t", str(t)])
       for form, t in (("exp", 1.0), ("exp", 3.5), ("chi2", 1.0))},
    **{f"loss_truncation_c{c}": Config(ROWS["cross_entropy"][:3] + ["loss_truncation", "--truncation-fraction", str(c)])
       for c in (0.1, 0.2, 0.4)},
    # SGD students (the multi30k-lstm1-sgd preset): cross-entropy's learning rate chosen on dev
    "cross_entropy_lr0.5": Config(ROWS["cross_entropy"], student=("--lr", "0.5")),
    "cross_entropy_lr2": Config(ROWS["cross_entropy"], student=("--lr", "2.0")),
    "cross_entropy_lr4": Config(ROWS["cross_entropy"], student=("--lr", "4.0")),
    # ... and its halving schedule: the constant-lr run from two thirds of the budget (0.67, rounded down to a
    # validation) on, its learning rate (which finetune_flags reads) halved every P updates: fairseq's step schedule
    **{f"cross_entropy_halve{period}": Config(ROWS["cross_entropy"], start=0.67, student=(
        "--lr-scheduler", "step", "--lr-deacy-period", str(period), "--lr-decay", "0.5")) for period in (400, 800)},
}
BASELINE = "cross_entropy"
# cross-entropy has converged where its best dev BLEU gains less than this over the last TAIL of the updates
CONVERGED_GAIN, CONVERGED_TAIL = 0.3, 0.2


class SearchRows:
    """The configurations of ``CONFIGS`` as the benchmark's rows."""

    def __init__(self, args):
        self.args = args

    def names(self):
        return list(CONFIGS)

    def flags(self, row):
        flags = list(CONFIGS[row].flags)
        return flags + shlex.split(self.args.l2t_flags) if "l2t_translation" in flags else flags

    def student_flags(self, row):
        return list(CONFIGS[row].student)

    def teacher_row(self, row):
        """A two-phase configuration's teacher: the one its source configuration learned (on the next seed)."""
        return CONFIGS[row].teacher_from

    def finetune_start(self, row):
        fraction = CONFIGS[row].start
        return None if fraction is None else validation_update(fraction, self.args)

    def finetune_flags(self, row, checkpoint):
        """The learning rate the cross-entropy run had reached at that checkpoint, held fixed."""
        lr = torch.load(checkpoint, map_location="cpu")["last_optimizer_state"]["param_groups"][0]["lr"]
        return ["--lr-scheduler", "fixed", "--lr", repr(lr)]


def benchmark_record(search, row, seed):
    """The benchmark's finished run of exactly this command (cross-entropy, label smoothing), not trained twice."""
    return same_run_record(search.args.benchmark_records, search.key(row, seed),
                           search.train_command(row, seed, "RUN", search.args.max_update), search.same_kernels)


def build_search(args, preset):
    """The benchmark's parts with the search's rows, its records (``search-records/``, beside the benchmark's,
    never among them, which it reuses), its own and the benchmark's checkpoints, its report, and no test set."""
    return Benchmark(args, preset, rows=SearchRows(args), records="search-records", fallback=benchmark_record,
                     checkpoint_folders=lambda: [args.work, args.benchmark_work], reporter=search_report,
                     decode_test=False)


def search_report(search, done):
    """``search.md`` and ``search.json``: each configuration's dev BLEU, its gain over cross-entropy, its time, what
    its teacher did, and how long cross-entropy keeps improving."""
    runs = {}
    for (row, seed), record in done.items():
        runs.setdefault(row, {})[seed] = record
    table = {}
    for row in search.args.rows:
        if row not in runs:
            continue
        by_seed = runs[row]
        dev = [r["best_dev_bleu"] for r in by_seed.values()]
        entry = {"flags": shlex.join([*CONFIGS[row].flags, *CONFIGS[row].student]),
                 "teacher_from": CONFIGS[row].teacher_from,
                 "seeds": sorted(by_seed), "best_dev_bleu": [statistics.mean(dev), spread(dev)],
                 "train_seconds": statistics.mean(r["train_seconds"] for r in by_seed.values())}
        base = runs.get(BASELINE, {})
        paired = [seed for seed in by_seed if seed in base]
        if paired and row != BASELINE:
            entry["dev_gain_to_ce"] = statistics.mean(by_seed[s]["best_dev_bleu"] - base[s]["best_dev_bleu"]
                                                      for s in paired)
            entry["time_ratio_to_ce"] = statistics.mean(cost(by_seed[s]) / cost(base[s]) for s in paired)
        entry.update(teacher_summary(search, row, by_seed))
        table[row] = entry
    meta = {"date": f"{datetime.date.today()}", "command": shlex.join(["l2t-search", *search.args.argv]),
            "preset": search.args.preset, "data": search.args.data, "max_update": search.args.max_update,
            "machine": f"{os.cpu_count()} CPU cores, {search.args.jobs} run(s) at a time",
            "finished_runs": len(done), "planned_runs": len(search.args.rows) * len(search.args.seeds)}
    if runs.get(BASELINE):  # how long cross-entropy keeps improving: the budget at which it has converged
        curves = [record["dev_bleu_curve"] for record in runs[BASELINE].values()]
        meta["ce_convergence"] = {"gains": convergence(curves, CONVERGED_TAIL), "budget": converged_budget(
            curves, CONVERGED_GAIN, CONVERGED_TAIL), "gain": CONVERGED_GAIN, "tail": CONVERGED_TAIL}
    with open(os.path.join(search.args.out, "search.json"), "w") as f:
        json.dump({"meta": meta, "configs": table}, f, indent=1)
    text = search_markdown(table, meta)
    with open(os.path.join(search.args.out, "search.md"), "w") as f:
        f.write(text)
    return text


def with_teacher_sources(configs):
    """The configurations and, for one that reuses a teacher, the one that trained it (and so on back), in the
    order of CONFIGS: a source comes before the configurations that need it."""
    needed = set(configs)
    for name in reversed(CONFIGS):
        if name in needed and CONFIGS[name].teacher_from:
            needed.add(CONFIGS[name].teacher_from)
    return [name for name in CONFIGS if name in needed]


def cost(record):
    """CPU seconds (which leave out waiting for a core), or for older records training seconds."""
    return record.get("cpu_seconds") or record["train_seconds"]


def teacher_summary(search, row, by_seed):
    """Relative spread of Phi over the target words at the last refresh, and the teacher steps' lookahead gains."""
    gains, spreads = [], []
    for seed in by_seed:
        path = search.record_path(row, seed, ".teacher.jsonl")
        if not os.path.isfile(path):
            return {}
        records = teacher_log.read(path)
        gains += [r["lookahead_gain"] for r in records if "lookahead_gain" in r]
        bands = records[-1]["phi_bands"] if records else {}
        if bands:
            spreads.append(max(b["max"] for b in bands.values()) / min(b["min"] for b in bands.values()))
    summary = {"phi_max_over_min": statistics.mean(spreads) if spreads else None}
    if gains:
        summary.update(lookahead_gain=statistics.mean(gains), positive_steps=sum(g > 0 for g in gains) / len(gains))
    return summary


def search_markdown(table, meta):
    def number(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    lines = [
        f"Dev-set search, measured {meta['date']} on {meta['machine']}; command: `{meta['command']}`; "
        f"data: `{meta['data']}`; {meta['max_update']} updates per run; {meta['finished_runs']} of "
        f"{meta['planned_runs']} runs finished. Best greedy dev BLEU over the run's validations; "
        "the test set is not decoded.",
        "",
        "| config | seeds | best dev BLEU | vs CE | CPU time x CE | Phi max/min at end | mean lookahead gain "
        "| steps with gain > 0 | flags |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in table.items():
        flags = e["flags"] + (f" (teacher of {e['teacher_from']})" if e["teacher_from"] else "")
        positive = e.get("positive_steps")
        lines.append(
            f"| {name} | {','.join(map(str, e['seeds']))} | {e['best_dev_bleu'][0]:.2f} ± {e['best_dev_bleu'][1]:.2f} "
            f"| {number(e.get('dev_gain_to_ce'))} | {number(e.get('time_ratio_to_ce'))} "
            f"| {number(e.get('phi_max_over_min'), 3)} | {number(e.get('lookahead_gain'), 5)} "
            f"| {'-' if positive is None else f'{positive:.0%}'} | `{flags}` |"
        )
    if "ce_convergence" in meta:
        c = meta["ce_convergence"]
        rule = (f"its best-so-far dev BLEU gains less than {c['gain']} over the last {c['tail']:.0%} of the "
                "updates (mean over its seeds)")
        verdict = (f"has converged at update {c['budget']}: from that budget on, {rule}" if c["budget"]
                   else f"has not converged within these runs: at no budget from which on, over at least "
                   f"{c['tail']:.0%} more of the run, {rule}")
        lines += ["", f"Cross-entropy {verdict}. The gain at each budget:", "",
                  "| budget | " + " | ".join(str(b) for b, _ in c["gains"]) + " |",
                  "|---|" + "---|" * len(c["gains"]),
                  "| gain | " + " | ".join(f"{g:.2f}" for _, g in c["gains"]) + " |"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "search.md, search.json and search-records/ (default: docs/benchmark/PRESET)",
                      "runs/search/PRESET", default_seeds=[1])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--benchmark-records", help="reuse the benchmark's finished runs of the same command "
                        "(cross_entropy, label_smoothed) from this folder; '' to train them again "
                        "(default: docs/benchmark/PRESET/records)")
    parser.add_argument("--benchmark-work", help="the benchmark's training folders, where a configuration that "
                        "starts from a reused cross-entropy run finds its checkpoint (default: runs/benchmark/PRESET)")
    parser.add_argument("--report", action="store_true", help="train nothing: rewrite search.md and search.json "
                        "from the finished runs' records")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.device = "cpu"  # the dev search runs on the CPU, beside the CPU benchmark's records
    preset = resolved_preset(args, parser, "search")
    if args.benchmark_records is None:
        args.benchmark_records = os.path.join("docs", "benchmark", args.preset, "records")
    args.benchmark_work = args.benchmark_work or os.path.join("runs", "benchmark", args.preset)
    args.rows = with_teacher_sources(args.configs)
    args.data = prepared_data(args, preset, parser)
    args.sequence_start_update, args.finetune_lr, args.search_records = None, None, None
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    search = build_search(args, preset)
    print(search.report(search.recorded() if args.report else search.run_all()))
    return 0


def cli():
    return benchmark_cli(main, "l2t-search")


if __name__ == "__main__":
    sys.exit(cli())
