"""What pairs the runs of one seed: the student's initial weights, its first batch, the first update's loss, and
where a run was resumed.

:func:`probe` replays the start of a run from its recorded ``fairseq-train``
arguments with fairseq's own ``cli_main`` (its seeding, task, model, trainer and
epoch iterator, in its order), in a temporary save dir, and stops it after the
first update: the weights that update started from, the ids of its batches and
its loss as fairseq logs it (base 2).  The records keep these beside
``resumed_at``: fairseq draws the batches of an epoch anew when a run resumes in
its middle, so rows of one seed see the same batches up to their first resume
after the first epoch.

    python -m l2t_fairseq.benchmark.pairing -- FAIRSEQ_TRAIN_ARGS...   # prints the facts as JSON
    python -m l2t_fairseq.benchmark.pairing --records DIR...           # adds them to records that lack them

(run from where the records' commands were run: their data and teacher paths are relative to it).
"""

import glob
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile

from l2t_fairseq.benchmark.command_lines import after, without
from l2t_fairseq.whole_files import write_whole

SHA_CHARS = 16


class FirstUpdateTaken(BaseException):
    """Stops fairseq-train after its first update (not an Exception: nothing in fairseq catches it)."""


def weights_digest(model):
    return state_digest(model.state_dict())


def state_digest(state):
    """The digest of a model's state dict (its tensors by name, as float32)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:SHA_CHARS]


def batches_digest(samples):
    digest = hashlib.sha256()
    for sample in samples:
        if sample:  # {}: fairseq's filler of an uneven shard
            digest.update(sample["id"].cpu().numpy().astype("int64").tobytes())
    return digest.hexdigest()[:SHA_CHARS]


def probe_here(argv):
    """The facts of ``fairseq-train ARGV``'s first update, in this process."""
    from fairseq import trainer as fairseq_trainer
    from fairseq_cli import train

    facts = {}
    Trainer = fairseq_trainer.Trainer
    train_step, get_train_iterator = Trainer.train_step, Trainer.get_train_iterator

    def first_update(self, samples, raise_oom=False):
        facts["initial_weights_sha256"] = weights_digest(self.model)
        facts["first_batches_sha256"] = batches_digest(samples)
        logged = train_step(self, samples, raise_oom)
        facts["first_update_loss"] = round(float(logged["loss"]), 6) if logged else None
        raise FirstUpdateTaken

    def iterator(self, epoch, *args, **kwargs):
        epoch_itr = get_train_iterator(self, epoch, *args, **kwargs)
        facts.setdefault("batches_per_epoch", len(epoch_itr))  # micro-batches of epoch 1
        return epoch_itr

    with tempfile.TemporaryDirectory() as save_dir:
        sys.argv = ["fairseq-train", *without(argv, "--save-dir"), "--save-dir", save_dir]
        Trainer.train_step, Trainer.get_train_iterator = first_update, iterator
        try:
            train.cli_main()
        except FirstUpdateTaken:
            pass
        finally:
            Trainer.train_step, Trainer.get_train_iterator = train_step, get_train_iterator
    return facts


def probe(argv, env=None):
    """The facts of ``fairseq-train ARGV``'s first update, from a process of its own (fairseq keeps global state)."""
    result = subprocess.run([sys.executable, "-m", "l2t_fairseq.benchmark.pairing", "--", *argv],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"pairing probe failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def pairing(facts, argv, resumed_at):
    """A record's pairing facts: the probe's, and the epoch of each resume (``resumed_at``: updates)."""
    update_freq = int(after(argv, "--update-freq", 1))
    per_epoch = math.ceil(facts["batches_per_epoch"] / update_freq)
    resumes = list(resumed_at or [])
    later = [u for u in resumes if u >= per_epoch]  # resumed in its first epoch, a run draws the same batches
    return {**facts, "updates_per_epoch": per_epoch, "resumed_at": resumes,
            "same_batches_until": later[0] if later else None}


def record_pairing(record, threads=1):
    """A benchmark record's pairing facts; None for a run that starts from another run's checkpoint (a fine-tune,
    a carry-on: that run's facts are its start)."""
    argv = shlex.split(record["command"])
    if record.get("carries_on") or any(flag in argv for flag in ("--finetune-from-model", "--restore-file")):
        return None
    try:
        return pairing(probe(argv, dict(os.environ, OMP_NUM_THREADS=str(threads))), argv, record.get("resumed_at"))
    except RuntimeError as e:  # the run's record is worth keeping without them
        return {"error": str(e)}


def add_to_records(folders):
    for path in sorted(p for folder in folders for p in glob.glob(os.path.join(folder, "*-seed*.json"))):
        with open(path) as f:
            record = json.load(f)
        if "pairing" not in record and "command" in record:
            record["pairing"] = record_pairing(record)
            write_whole(path, json.dumps(record, indent=1))
            print(f"{path}: {record['pairing']}", flush=True)


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--records"]:
        add_to_records(argv[1:])
        return
    if argv[:1] == ["--"]:
        argv = argv[1:]
    print(json.dumps(probe_here(argv)), flush=True)
    # fairseq's training loop was left in its first update: leave without tearing down its threads (which can
    # abort the interpreter at exit, "terminate called without an active exception")
    os._exit(0)


if __name__ == "__main__":
    main()
