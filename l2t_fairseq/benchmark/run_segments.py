"""A fairseq-train run cut off and resumed in segments: running it with its CPU time kept as it goes, resuming it
from its last checkpoint, and what its checkpoints, logs and snapshots say.

A run's folder holds ``command.json`` (its command, the updates it was resumed at, what each cut segment spent),
``train.log`` (the current segment's log; earlier ones are ``train.segment-N.log``) and, while it trains,
``cpu.json`` (its CPU seconds so far).
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import torch

from l2t_fairseq.refresh import checkpoints  # noqa: F401 - lets torch.load read fairseq checkpoints (weights_only)
from l2t_fairseq.whole_files import write_whole


def checkpoint_update(path):
    """The number of updates a fairseq checkpoint was saved after."""
    return torch.load(path, map_location="cpu")["optimizer_history"][-1]["num_updates"]


def segment_logs(run_dir, count):
    """What the first ``count`` segments of a resumed run logged (``train.segment-N.log``), in order."""
    return "".join(open(os.path.join(run_dir, f"train.segment-{n}.log")).read() for n in range(1, count + 1))


def dev_bleu_curve(log):
    """(update, dev BLEU) of every validation in a training log, in update order; a validation repeated by a
    resumed run (after the checkpoint it resumed from) counts once, as last logged."""
    pattern = r"valid on 'valid' subset \|.*?\| bleu ([0-9.]+) \|.*?num_updates (\d+)"
    return sorted({int(m.group(2)): float(m.group(1)) for m in re.finditer(pattern, log)}.items())


MARKER = "command.json"
CPU_SNAPSHOT = "cpu.json"  # a training run's CPU seconds so far, rewritten while it trains: what a cut one spent
SNAPSHOT_SECONDS = 20
RUNNING = set()  # the training runs measured_run is waiting for, in every thread


def cpu_so_far(pid):
    """User + system CPU seconds of a running process (its threads, and its children it has waited for), from
    /proc; None where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(tick) for tick in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime stime cutime cstime


def measured_run(command, log_path, threads=None, snapshot=None, cwd=None):
    """Runs ``command``; returns (wall seconds, peak RSS in MiB, output, CPU seconds).  Fails loudly with the
    log's tail.  CPU seconds (user + system) leave out the time spent waiting for a core, which wall seconds
    count; both still grow when the machine is oversubscribed (shared caches and memory bandwidth).  With
    ``snapshot`` (a path), the CPU seconds so far are written there every ``SNAPSHOT_SECONDS`` while it runs."""
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}))
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        written = start
        RUNNING.add(process)
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.2)
                if snapshot and time.perf_counter() - written >= SNAPSHOT_SECONDS:
                    cpu = cpu_so_far(process.pid)
                    if cpu is not None:
                        write_whole(snapshot, json.dumps({"cpu_seconds": cpu}))
                    written = time.perf_counter()
        except BaseException:  # stopped (Ctrl-C): so is the run, at once, not left training on in a folder that
            process.terminate()  # the next resume reads and writes
            process.wait()
            raise
        finally:
            RUNNING.discard(process)
    wall = time.perf_counter() - start
    output = open(log_path).read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{shlex.join(command)} failed; see {log_path}:\n{output[-2000:]}")
    return wall, usage.ru_maxrss / 1024, output, usage.ru_utime + usage.ru_stime


def stop_children_on_sigterm():
    """Makes SIGTERM stop the training runs that ``measured_run`` waits for, in any thread, before this process
    exits (by default it kills the parent alone, and a run left training on writes into the folder the next resume
    reads)."""
    def stop(signum, frame):
        for process in list(RUNNING):
            process.terminate()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def console_command(entry, name):
    """Runs ``entry``, the main of a console command that waits for training runs: a failed run ends it in one
    line (the run's log tail, and where the log is), and stopping it (SIGTERM or Ctrl-C) stops those runs."""
    stop_children_on_sigterm()
    try:
        return entry()
    except RuntimeError as e:
        sys.exit(f"{name}: error: {e}")


def measured_segment(command, run_dir, threads=None, cwd=None):
    """``measured_run`` of one segment of a training run: its log to ``run_dir/train.log``, its CPU seconds so
    far to ``run_dir/cpu.json`` while it trains (what ``cut_segment`` reads if it is cut off)."""
    return measured_run(command, os.path.join(run_dir, "train.log"), threads,
                        snapshot=os.path.join(run_dir, CPU_SNAPSHOT), cwd=cwd)


def saved_run(run_dir):
    """What ``command.json`` says of a run that left a last checkpoint, and the update it was saved after; else
    (None, None)."""
    marker, last = os.path.join(run_dir, MARKER), os.path.join(run_dir, "checkpoint_last.pt")
    if not (os.path.isfile(marker) and os.path.isfile(last)):
        return None, None
    with open(marker) as f:
        return json.load(f), checkpoint_update(last)


def start_afresh(run_dir, command, kernels=None):
    """An empty folder for ``command`` (a run cut off earlier starts again from scratch), noting the ``kernels``
    it trains on (the benchmark's kernel identity), where they are known."""
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    with open(os.path.join(run_dir, MARKER), "w") as f:
        json.dump({"command": command, "resumes": [], **({"kernels": kernels} if kernels else {})}, f)


def resume(run_dir, saved, command, update):
    """Keeps the folder for fairseq to resume from its last checkpoint (saved after ``update``) with ``command``:
    records what the cut segment spent, moves its log to ``train.segment-N.log``.  Returns the updates the run
    was resumed at so far and what its earlier segments logged."""
    segments = saved.setdefault("segments", [])  # one per earlier segment; None: cut before they were kept
    segments += [None] * (len(saved["resumes"]) - len(segments)) + [cut_segment(run_dir)]
    saved["resumes"].append(update)
    saved["command"] = command
    os.replace(os.path.join(run_dir, "train.log"), os.path.join(run_dir, f"train.segment-{len(saved['resumes'])}.log"))
    with open(os.path.join(run_dir, MARKER), "w") as f:
        json.dump(saved, f)
    return saved["resumes"], segment_logs(run_dir, len(saved["resumes"]))


def cut_segment(run_dir):
    """What the segment of a run that was cut off spent: its CPU seconds (its last snapshot; None without one)
    and the last update it logged, before the next segment starts."""
    snapshot, log = os.path.join(run_dir, CPU_SNAPSHOT), os.path.join(run_dir, "train.log")
    log = open(log).read() if os.path.isfile(log) else ""
    cpu = None
    if os.path.isfile(snapshot):
        with open(snapshot) as f:
            cpu = json.load(f)["cpu_seconds"]
        os.remove(snapshot)
    return {"cpu_seconds": cpu, "reached": max(map(int, re.findall(r"num_updates[ =](\d+)", log)), default=None)}


def segments_of(run_dir):
    """What each cut segment of a resumed run spent (``cut_segment``), in order."""
    with open(os.path.join(run_dir, MARKER)) as f:
        return json.load(f).get("segments", [])


def whole_run_cpu(segments, resumes, last_cpu, updates):
    """The CPU seconds of a run trained in segments (resumed at ``resumes``; ``last_cpu`` measured over the last,
    to ``updates``): each segment's cost per update (its CPU over the updates it reached, those it trained past
    its last checkpoint included) times the updates it kept; a segment with no snapshot (or a run carried on from
    another's end) at the last segment's rate."""
    starts = [0, *resumes]
    rate = last_cpu / (updates - starts[-1])
    total = last_cpu
    for i in range(len(resumes)):
        segment = segments[i] if i < len(segments) else None
        trained = (segment["reached"] or 0) - starts[i] if segment else 0
        measured = segment is not None and segment["cpu_seconds"] is not None and trained > 0
        total += (segment["cpu_seconds"] / trained if measured else rate) * (starts[i + 1] - starts[i])
    return total

