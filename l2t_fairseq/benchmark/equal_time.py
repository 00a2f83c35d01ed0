"""Cross-entropy given the compute of a row that costs more than it: how many updates, and from where.

Under a learning-rate schedule of the update number alone the equal-time run is
a shorter cross-entropy run of its seed carried on from its end; under a step
schedule that holds its learning rate and then decays it before the budget's
end, it fine-tunes the cross-entropy run's checkpoint at the end of the hold,
held longer by the extra updates.
"""

import json
import os
import shlex
import shutil

from l2t_fairseq.benchmark.command_lines import after, extends, without
from l2t_fairseq.benchmark.presets import BASELINE, EQUAL_TIME
from l2t_fairseq.benchmark.run_segments import MARKER, checkpoint_update, segment_logs


def equal_time_updates(ce, l2t):
    """As many cross-entropy updates as fit in the L2T run's compute at the cross-entropy run's speed: CPU seconds
    (which leave out waiting for a core) where both records have them, else training seconds."""
    key = "cpu_seconds" if "cpu_seconds" in ce and "cpu_seconds" in l2t else "train_seconds"
    return round(l2t[key] / (ce[key] / ce["updates"]))


class EqualTime:
    def __init__(self, benchmark):
        self.benchmark, self.args = benchmark, benchmark.args

    def held_lr_updates(self):
        """Under a step schedule that holds the learning rate for its first W updates (``--warmup-updates`` W
        from ``--warmup-init-lr`` equal to ``--lr``) and decays it before the budget's end: W, else None."""
        flags = self.benchmark.student_flags()
        hold = int(after(flags, "--warmup-updates", 0))
        if after(flags, "--lr-scheduler") != "step" or not 0 < hold < self.args.max_update:
            return None
        return hold if float(after(flags, "--warmup-init-lr", -1)) == float(after(flags, "--lr")) else None

    def shorter_runs(self, seed, updates, done):
        """The finished cross-entropy runs of ``seed`` shorter than ``updates``, longest first: the equal-time
        runs (recorded in ``OUT``, whether or not among this command's rows), then the cross-entropy row's."""
        runs = [run for row in EQUAL_TIME if (run := done.get((row, seed)) or self.benchmark.load(row, seed))]
        return sorted((run for run in runs if run["updates"] < updates), key=lambda run: -run["updates"]) + [
            done[(BASELINE, seed)]
        ]

    def carry_on_baseline(self, shorter, run_dir, command):
        """Cross-entropy given more updates, under a learning-rate schedule of the update number alone, is a
        shorter cross-entropy run carried on (the first of ``shorter`` whose last checkpoint is there): the
        folder starts as that run's end (its last and best checkpoints and its logs, under this command at that
        run's budget), which the run's folder preparation extends.  Returns that run's folder, or None: not when a
        cut-off run of this command is to be resumed there, nor under another schedule."""
        marker = os.path.join(run_dir, MARKER)
        if self.args.resume_cut_runs and os.path.isfile(marker):
            with open(marker) as f:
                if json.load(f)["command"] == command:
                    return None
        for ce in shorter:
            source = after(shlex.split(ce["command"]), "--save-dir")
            at_budget = [*without(command, "--max-update"), "--max-update", str(ce["updates"])]
            last = os.path.join(source, "checkpoint_last.pt")
            if extends(at_budget, command) and os.path.isfile(last) and checkpoint_update(last) == ce["updates"]:
                break
        else:
            return None
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
            shutil.copy(os.path.join(source, name), os.path.join(run_dir, name))
        cut = 0  # the segments the cross-entropy run was resumed in, logged before its train.log
        if os.path.isfile(os.path.join(source, MARKER)):
            with open(os.path.join(source, MARKER)) as f:
                cut = len(json.load(f)["resumes"])
        with open(os.path.join(run_dir, "train.log"), "w") as log:
            log.write(segment_logs(source, cut) + open(os.path.join(source, "train.log")).read())
        with open(marker, "w") as f:
            json.dump({"command": at_budget, "resumes": []}, f)
        return source
