"""Where a fine-tune starts: the cross-entropy run's checkpoint at an update, or, where its folder is gone (a
machine that starts bare, with only the records), that run trained again to that update."""

import datetime
import glob
import json
import os
import threading

from l2t_fairseq.benchmark.command_lines import extends
from l2t_fairseq.benchmark.machine import kernels
from l2t_fairseq.benchmark.presets import BASELINE, REPO
from l2t_fairseq.benchmark.run_segments import checkpoint_update, dev_bleu_curve, measured_segment
from l2t_fairseq.benchmark.scheduler import held


class StartCheckpoints:
    """``folders()``: where the cross-entropy runs' checkpoints are looked for, in order."""

    def __init__(self, benchmark, folders):
        self.benchmark, self.args, self.folders = benchmark, benchmark.args, folders
        self.lock = threading.Lock()

    def checkpoint(self, seed, update):
        """The cross-entropy run's checkpoint at ``update``, and None; where its folder is gone, that run trained
        again to ``update`` (see ``retrained``): its checkpoint, and what the record of a run that starts from it
        says of it."""
        for folder in self.folders():
            found = glob.glob(os.path.join(folder, self.benchmark.key(BASELINE, seed), f"checkpoint_*_{update}.pt"))
            if found:
                return found[0], None
        return self.retrained(seed, update)

    def retrained(self, seed, update):
        """The cross-entropy run of ``seed`` trained again, to ``update`` only, in ``WORK/cross_entropy-seedS-to-U``
        (resumed if cut off): its last checkpoint, and ``{"folder", "dev_bleu_curve", "same_as_record"}``.  Under a
        schedule of the update number alone, on the machine that trained the recorded run, this is that run up to
        ``update`` (its dev BLEU curve is the record's, point for point); on another machine's arithmetic it is
        another run of the same command and seed, which the run that starts from it says it starts from.  Its cost
        is not counted: a fine-tune's record prorates the recorded run's."""
        bench = self.benchmark
        key = bench.key(BASELINE, seed)
        run_dir = os.path.join(self.args.work, f"{key}-to-{update}")
        command = bench.train_command(BASELINE, seed, run_dir, update)
        if not extends(command, bench.train_command(BASELINE, seed, run_dir, self.args.max_update)):
            raise RuntimeError(f"{key}: no checkpoint at update {update} in {' or '.join(self.folders())} "
                               "to fine-tune from, and its schedule reads the budget: delete its record to redo it")
        last, curve_path = os.path.join(run_dir, "checkpoint_last.pt"), os.path.join(run_dir, "dev_bleu_curve.json")
        # two fine-tunes of one seed, in this process or another, wait for the same run
        with self.lock, held(run_dir + ".lock"):
            if not os.path.isfile(curve_path):  # written once the run is done
                print(f"[{datetime.datetime.now():%H:%M:%S}] {key}: no checkpoint at update {update}; trained "
                      f"again to there in {run_dir}", flush=True)
                earlier = bench.prepare_run_dir(run_dir, command, update)[1]
                output = measured_segment(command, run_dir, bench.threads, cwd=REPO)[2]
                if checkpoint_update(last) != update:
                    raise RuntimeError(f"{key}: trained again to update {update}, its last checkpoint is not there")
                with open(curve_path, "w") as f:
                    json.dump(dev_bleu_curve(earlier + output), f)
        with open(curve_path) as f:
            curve = [list(point) for point in json.load(f)]
        record = bench.load(BASELINE, seed)
        recorded = [list(point) for point in record["dev_bleu_curve"] if point[0] <= update]
        if curve != recorded:
            theirs = record.get("kernels", "not recorded")
            print(f"  {key}: trained again to update {update} in {run_dir}, its dev BLEU curve {curve} is not its "
                  f"record's {recorded} (another machine's arithmetic: {kernels(self.args.device)} here, {theirs} "
                  "there): "
                  "the run that starts from it is recorded as starting from this one", flush=True)
        return last, {"folder": run_dir, "dev_bleu_curve": curve, "same_as_record": curve == recorded}
