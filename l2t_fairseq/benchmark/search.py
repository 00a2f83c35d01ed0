"""Choosing the teacher's settings on the validation set only: dev BLEU of each configuration, never test BLEU.

    l2t-search                           # every configuration, seed 1, Multi30k
    l2t-search --configs adam_relative --seeds 1 2

Each configuration trains the benchmark's student (same preset, budget, batches and
schedule as ``l2t-benchmark``) and is scored by its best greedy dev BLEU over
its validations; the test set is not decoded.  Runs are recorded and resumed exactly
as the benchmark's are.  Writes ``search.md`` and ``search.json`` to ``--out``
(default ``docs/benchmark/PRESET``, run records in its ``search-records/``): dev BLEU against cross-entropy of the
same seeds, time against cross-entropy, and what the teacher did (relative spread of
``Phi`` at the end, mean lookahead gain, share of steps with a positive gain).
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys

from l2t_fairseq import teacher_log
from l2t_fairseq.benchmark import runner
from l2t_fairseq.benchmark.presets import L2T, PRESETS, ROWS
from l2t_fairseq.benchmark.report import spread
from l2t_fairseq.benchmark.runner import Benchmark, add_run_arguments

LINEAR = ["--unroll-optimizer", "sgd", "--unroll-lr", "1.0", "--teacher-parametrization", "linear",
          "--phi-normalization", "none"]
RELATIVE = ["--unroll-optimizer", "adam", "--teacher-parametrization", "exp", "--phi-normalization", "token_mean"]
# name: (loss flags, the configuration whose learned teacher this one starts from, or None)
CONFIGS = {
    "cross_entropy": (ROWS["cross_entropy"], None),
    "label_smoothed": (ROWS["label_smoothed"], None),
    # the plugin's first defaults: the paper's SGD unroll, a linear W, coefficients used as they are
    "l2t_linear_sgd": (L2T + LINEAR + ["--teacher-interval", "100", "--teacher-lr", "1e-3"], None),
    # a teacher that moves, and harms (coefficients turn negative)
    "l2t_sgd_k20_lr1e-2": (L2T + LINEAR + ["--teacher-interval", "20", "--teacher-lr", "1e-2"], None),
    # the student's own Adam steps in the unroll, positive coefficients of fixed mean, relative teacher lr
    "adam_relative": (L2T + RELATIVE + ["--teacher-interval", "50", "--teacher-lr", "0.05"], None),
    "adam_relative_k20": (L2T + RELATIVE + ["--teacher-interval", "20", "--teacher-lr", "0.05"], None),
    "adam_relative_lr0.2": (L2T + RELATIVE + ["--teacher-interval", "50", "--teacher-lr", "0.2"], None),
    "adam_relative_u10": (L2T + RELATIVE + ["--teacher-interval", "50", "--teacher-lr", "0.05",
                                            "--unroll-steps", "10"], None),
    "sgd_relative": (L2T + ["--unroll-optimizer", "sgd", "--unroll-lr", "1.0"] + RELATIVE[2:]
                     + ["--teacher-interval", "50", "--teacher-lr", "0.05"], None),
    # a refresh costs about 35 student updates here: K = 100 keeps the run within 1.5x cross-entropy's time
    "adam_relative_k100": (L2T + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.1"], None),
    "adam_relative_k100_lr0.03": (L2T + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.03"], None),
    "adam_relative_k100_lr0.3": (L2T + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.3"], None),
    # the paper's two phases: the teacher adam_relative learned (on the next seed, cyclically: with one seed, the
    # same one) teaches a new student, frozen or learning on
    "adam_relative_frozen": (L2T + RELATIVE + ["--freeze-teacher"], "adam_relative"),
    "adam_relative_continued": (L2T + RELATIVE + ["--teacher-interval", "50", "--teacher-lr", "0.05"],
                                "adam_relative"),
    "adam_relative_k100_frozen": (L2T + RELATIVE + ["--teacher-interval", "100", "--freeze-teacher"],
                                  "adam_relative_k100"),
    "adam_relative_k100_continued": (L2T + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.1"],
                                     "adam_relative_k100"),
    # the default's teacher (lr 0.03) learning on over a second student
    "adam_relative_k100_lr0.03_continued": (L2T + RELATIVE + ["--teacher-interval", "100", "--teacher-lr", "0.03"],
                                            "adam_relative_k100_lr0.03"),
    # the plugin's defaults as they are (replaying the U updates before the refresh, the cross-entropy loss scale)
    "l2t_defaults": (L2T, None),
    # Algorithm 1's reverse of the real steps: from where the student took them, over 20 updates, and with the
    # authors' replayed windows (5 teacher steps per refresh)
    "past_u20": (L2T + ["--unroll-start", "past", "--unroll-steps", "20"], None),
    "past_u20_m5": (L2T + ["--unroll-start", "past", "--unroll-steps", "20", "--teacher-replays", "5"], None),
}
BASELINE = "cross_entropy"


class Search(Benchmark):
    decode_test = False

    def __init__(self, args, preset):
        super().__init__(args, preset)
        self.records = os.path.join(args.out, "search-records")  # beside the benchmark's records, never among them

    def row_flags(self, row):
        flags = list(CONFIGS[row][0])
        return flags + shlex.split(self.args.l2t_flags) if "l2t_translation" in flags else flags

    def load(self, row, seed):
        return super().load(row, seed) or self.benchmark_record(row, seed)

    def benchmark_record(self, row, seed):
        """The benchmark's finished run of exactly this command (cross-entropy, label smoothing), not trained twice."""
        if not self.args.benchmark_records:
            return None
        path = os.path.join(self.args.benchmark_records, self.key(row, seed) + ".json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            record = json.load(f)
        wanted = self.train_command(row, seed, "RUN", self.args.max_update)[3:]
        return record if without_save_dir(shlex.split(record["command"])) == without_save_dir(wanted) else None

    def teacher_source(self, row, seed):
        """A two-phase configuration's teacher: the one its source configuration learned on the next seed."""
        source = CONFIGS[row][1]
        return (source, self.teacher_seed(seed)) if source else None

    def report(self, done):
        runs = {}
        for (row, seed), record in done.items():
            runs.setdefault(row, {})[seed] = record
        table = {}
        for row in self.args.rows:
            if row not in runs:
                continue
            by_seed = runs[row]
            dev = [r["best_dev_bleu"] for r in by_seed.values()]
            entry = {"flags": shlex.join(CONFIGS[row][0]), "teacher_from": CONFIGS[row][1],
                     "seeds": sorted(by_seed), "best_dev_bleu": [statistics.mean(dev), spread(dev)],
                     "train_seconds": statistics.mean(r["train_seconds"] for r in by_seed.values())}
            base = runs.get(BASELINE, {})
            paired = [seed for seed in by_seed if seed in base]
            if paired and row != BASELINE:
                entry["dev_gain_to_ce"] = statistics.mean(by_seed[s]["best_dev_bleu"] - base[s]["best_dev_bleu"]
                                                          for s in paired)
                entry["time_ratio_to_ce"] = statistics.mean(by_seed[s]["train_seconds"] / base[s]["train_seconds"]
                                                            for s in paired)
            entry.update(teacher_summary(self, row, by_seed))
            table[row] = entry
        meta = {"date": f"{datetime.date.today()}", "command": shlex.join(["l2t-search", *self.args.argv]),
                "preset": self.args.preset, "data": self.args.data, "max_update": self.args.max_update,
                "machine": f"{os.cpu_count()} CPU cores, {self.args.jobs} run(s) at a time",
                "finished_runs": len(done), "planned_runs": len(self.args.rows) * len(self.args.seeds)}
        with open(os.path.join(self.args.out, "search.json"), "w") as f:
            json.dump({"meta": meta, "configs": table}, f, indent=1)
        text = search_markdown(table, meta)
        with open(os.path.join(self.args.out, "search.md"), "w") as f:
            f.write(text)
        return text


def without_save_dir(command):
    words = list(command)
    if "--save-dir" in words:
        del words[words.index("--save-dir") + 1]
    return words


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
        "| config | seeds | best dev BLEU | vs CE | time x CE | Phi max/min at end | mean lookahead gain "
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
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, "search.md, search.json and search-records/ (default: docs/benchmark/PRESET)",
                      "runs/search/PRESET", default_seeds=[1])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--benchmark-records", help="reuse the benchmark's finished runs of the same command "
                        "(cross_entropy, label_smoothed) from this folder; '' to train them again "
                        "(default: docs/benchmark/PRESET/records)")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    preset = PRESETS[args.preset]
    args.max_update = args.max_update or preset["max_update"]
    args.validate_every = min(args.validate_every or preset["validate_every"], args.max_update)
    args.jobs = args.jobs or preset["jobs"]
    args.out = args.out or os.path.join("docs", "benchmark", args.preset)
    args.work = args.work or os.path.join("runs", "search", args.preset)
    if args.benchmark_records is None:
        args.benchmark_records = os.path.join("docs", "benchmark", args.preset, "records")
    # configurations that reuse a teacher need the run that trained it
    args.rows = [name for name in CONFIGS if name in args.configs or any(
        CONFIGS[c][1] == name for c in args.configs)]
    args.data = runner.prepared_data(args, preset, parser)
    args.sequence_start_update, args.finetune_lr = None, None
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    search = Search(args, preset)
    print(search.report(search.run_all()))
    return 0


def cli():
    return runner.cli(main, "l2t-search")
