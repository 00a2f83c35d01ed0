"""The benchmark's results files: ``results.json`` (meta, summary, runs), ``results.md`` (the tables, the direct
tests against label smoothing, pairing, the verdict) and the plots, rewritten after every finished run."""

import datetime
import json
import os
import shlex

import torch

from l2t_fairseq.benchmark.plots import plot_all
from l2t_fairseq.benchmark.report import bootstrap_settings, pairing_summary, summarize
from l2t_fairseq.benchmark.results_md import markdown
from l2t_fairseq.benchmark.teacher_training import teacher_training_cost
from l2t_fairseq.benchmark.verdict import filter_choice, verdict
from l2t_fairseq.whole_files import write_whole


def write_results(benchmark, done):
    """``results.json``, ``results.md`` and the plots, from the finished runs; returns the table."""
    args = benchmark.args
    runs = {}
    for (row, seed), record in done.items():
        runs.setdefault(str(seed), {})[row] = record
    rows = [row for row in args.rows if any(row in by_row for by_row in runs.values())]
    summary = summarize(runs, rows, benchmark.records)
    meta = {
        "date": f"{datetime.date.today()}", "command": shlex.join(["l2t-benchmark", *args.argv]),
        "preset": args.preset, "data": args.data, "seeds": args.seeds,
        "max_update": args.max_update, "validate_every": args.validate_every,
        "sequence_start_update": args.sequence_start_update,
        "finetune_lr": args.finetune_lr, "l2t_flags": args.l2t_flags, "jobs": args.jobs,
        "machine": f"{os.cpu_count()} CPU cores, {benchmark.threads} thread(s) per run, {args.jobs} run(s) at "
                   "a time" + (", CUDA" if torch.cuda.is_available() else ", CPU only"),
        "finished_runs": len(done),
        # --report lists what is there; the rows and seeds it is given need not all be planned
        "planned_runs": None if args.report else len(args.rows) * len(args.seeds),
        "bootstrap": bootstrap_settings(),
        "pairing": pairing_summary(runs),
        "filter_choice": filter_choice(runs),
    }
    students = os.path.join(benchmark.records, "teacher-training", "students.json")
    if "l2t_dlf_trained" in rows and os.path.isfile(students):
        with open(students) as f:
            meta["teacher_training"] = teacher_training_cost(json.load(f), runs)
    meta["verdict"] = verdict(summary, runs)
    table = markdown(summary, meta, runs)
    # whole files only: another process on the same --out may read them, or write them, meanwhile
    write_whole(os.path.join(args.out, "results.json"),
                json.dumps({"meta": meta, "summary": summary, "runs": runs}, indent=1))
    write_whole(os.path.join(args.out, "results.md"), table)
    plot_all(args.out, args.data)
    return table
