"""Pinning torch's CPU kernels, and the kernel fingerprint that says which runs may be compared.

A CPU run's arithmetic depends on the kernels that torch's dispatch, its BLAS
(MKL) and oneDNN pick for the processor: the same command, initial weights and
batches gave 13.83 test BLEU on one machine and 29.95 on another.  The benchmark
and the search pin them to the AVX2 code paths (``PINNED``, passed on to every
run they start; ``--no-pin-kernels`` leaves the machine's own choice), and each
record carries a **kernel fingerprint**: the digest of the weights after 20
updates of the benchmark's Transformer student as ``fairseq-train`` trains it, on
a synthetic corpus, from a fixed seed, computed in a process of its own under the
runs' settings (the pins, the threads per run).  Two
runs are compared, paired, only where their fingerprints are equal.  A
fingerprint is computed once per machine and settings and cached
(``$XDG_CACHE_HOME/l2t-fairseq/kernel-fingerprints.json``).

    python -m l2t_fairseq.benchmark.kernels [--threads N] [--no-pin-kernels]   # this machine's fingerprint
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys

import torch

from l2t_fairseq.benchmark.machine import cpu_info
from l2t_fairseq.benchmark.scheduler import held
from l2t_fairseq.whole_files import write_whole

# the instruction set torch's own kernels are dispatched to, MKL's conditional numerical reproducibility code path,
# and oneDNN's largest instruction set: AVX2, which every machine met so far (Intel Xeon AVX512, AMD EPYC AVX2 and
# AVX512) has, at about the speed of each one's own choice (MKL_CBWR=COMPATIBLE costs 2.5x)
PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
FINGERPRINT_UPDATES = 20
# what the fingerprint computes, in the cache's key: a changed computation is computed again
FINGERPRINT_METHOD = f"fairseq-train transformer_l2t_toy, synthetic corpus, {FINGERPRINT_UPDATES} updates"
DIGEST_CHARS = 16


def pin_kernels(pinned=True, environ=os.environ):
    """Pins ``environ`` (which the runs inherit) to ``PINNED``, or, with ``pinned`` false, leaves the machine's own
    choice (removing earlier pins); returns the pins in force."""
    for name, value in PINNED.items():
        if pinned:
            environ[name] = value
        else:
            environ.pop(name, None)
    return pins_in_force(environ)


def pins_in_force(environ=os.environ):
    """The pins that ``environ`` holds, set by ``pin_kernels`` or by hand."""
    return {name: environ[name] for name in PINNED if name in environ}


def kernel_identity(record):
    """What pairs a record's run with others: its kernel fingerprint; for a record without one (made on a GPU, or
    before fingerprints), its ``kernels`` (processor, instruction set and torch; GPU, CUDA and torch)."""
    return record.get("kernel_fingerprint") or record.get("kernels")


def settings_key(threads, environ=os.environ):
    """What a fingerprint is cached under: the processor and a digest of its feature flags (the same model name can
    hide other instruction sets on a virtual machine), torch's version, the pins and the threads per run."""
    model, flags = cpu_info()
    flags = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:DIGEST_CHARS]
    pins = ",".join(f"{name}={environ[name]}" for name in sorted(PINNED) if name in environ)
    return f"{model} [{flags}] torch {torch.__version__} threads {threads} pins [{pins}]; {FINGERPRINT_METHOD}"


def cache_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "l2t-fairseq", "kernel-fingerprints.json")


def fingerprint(threads, environ=None, cache=None):
    """The kernel fingerprint of runs with ``threads`` threads under ``environ`` (default: this process's, which
    the runs inherit), from the cache, or computed in a process of its own and cached: {``kernel_fingerprint``,
    ``capability`` (the instruction set torch dispatched to there)}."""
    environ = dict(os.environ if environ is None else environ)
    cache = cache or cache_path()
    key = settings_key(threads, environ)
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    with held(cache + ".lock"):  # runs started at once compute it once
        known = json.load(open(cache)) if os.path.isfile(cache) else {}
        if key not in known:
            known[key] = computed(threads, environ)
            write_whole(cache, json.dumps(known, indent=1, sort_keys=True))
    return known[key]


def computed(threads, environ):
    """The fingerprint and the capability, computed in a child process under ``environ`` (torch reads the pins
    when it starts)."""
    env = dict(environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    result = subprocess.run([sys.executable, "-m", "l2t_fairseq.benchmark.kernels", "--here"], capture_output=True,
                            text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"kernel fingerprint failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def synthetic_corpus(folder, pairs=3000, words=4000, seed=1):
    """A parallel corpus of random sentences (5-25 words of a ``words``-word vocabulary, Zipf-like), binarized by
    fairseq-preprocess into ``folder/bin``: batches of the benchmark's size, no data of the benchmark's."""
    generator = torch.Generator().manual_seed(seed)
    weights = 1.0 / torch.arange(1, words + 1, dtype=torch.float64)
    for split, count in (("train", pairs), ("valid", 50)):
        for side in ("src", "tgt"):
            with open(os.path.join(folder, f"{split}.{side}"), "w") as f:
                for _ in range(count):
                    length = int(torch.randint(5, 26, (), generator=generator))
                    sentence = torch.multinomial(weights, length, True, generator=generator)
                    f.write(" ".join(f"w{int(w)}" for w in sentence) + "\n")
    from fairseq_cli import preprocess

    preprocess.main(preprocess.options.get_preprocessing_parser().parse_args([
        "--source-lang", "src", "--target-lang", "tgt", "--trainpref", os.path.join(folder, "train"),
        "--validpref", os.path.join(folder, "valid"), "--destdir", os.path.join(folder, "bin"), "--workers", "1",
    ]))
    return os.path.join(folder, "bin")


def student_updates(updates=FINGERPRINT_UPDATES, seed=1):
    """The weights' digest after ``updates`` updates of the benchmark's Transformer student as ``fairseq-train``
    trains it (``transformer_l2t_toy``, Adam, dropout, 4,096-token batches; fairseq's criterion, optimizer and
    trainer) on a synthetic corpus, from ``seed``: every kernel a benchmark run's training calls, at its sizes."""
    import tempfile

    from fairseq_cli import train

    from l2t_fairseq.benchmark.pairing import state_digest
    from l2t_fairseq.benchmark.presets import PRESETS

    with tempfile.TemporaryDirectory() as folder:
        data = synthetic_corpus(folder, seed=seed)
        sys.argv = ["fairseq-train", data, "--task", "translation", "--criterion", "cross_entropy",
                    *PRESETS["multi30k"]["train"], "--max-update", str(updates), "--seed", str(seed), "--save-dir",
                    os.path.join(folder, "run"), "--no-epoch-checkpoints", "--disable-validation",
                    "--log-format", "none"]
        train.cli_main()
        checkpoint = torch.load(os.path.join(folder, "run", "checkpoint_last.pt"), map_location="cpu",
                                weights_only=False)
        return state_digest(checkpoint["model"])[:DIGEST_CHARS]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="threads per run (default: 1)")
    parser.add_argument("--no-pin-kernels", action="store_true", help="the machine's own kernels, unpinned")
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)  # the computation, in this process
    args = parser.parse_args(argv)
    if args.here:
        print(json.dumps({"kernel_fingerprint": student_updates(),
                          "capability": torch.backends.cpu.get_cpu_capability()}), flush=True)
        return 0
    pin_kernels(not args.no_pin_kernels)
    print(json.dumps({"settings": settings_key(args.threads), **fingerprint(args.threads)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
