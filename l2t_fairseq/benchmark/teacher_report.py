"""What the online teachers learned, against a null: ``OUT/teacher.md``, written with the plots.

For each seed's ``l2t_dlf`` run, from its last logged ``Phi`` (relative to the
mean over the words that occur as training targets):

- how far the coefficients moved from the initial ones (every word at
  ``--phi-init``, the loss of the ``l2t_dlf_fixed`` row): their mean over the
  initial value, and the share of those words more than ``MOVED`` from it;
- the spread of the coefficients over those words (std / mean), against the
  spread that the same teacher reaches when each of its steps follows a random
  hypergradient instead (the null: the same number of Adam steps, the same
  states and learning rate, the hypergradient drawn from N(0, 1) per word);
- whether the seeds agree: Spearman's rank correlation of the relative
  coefficients of the most frequent target words between each pair of seeds;
- the frequent words the teachers weight up and down most, with their relative
  coefficient on each seed.
"""

import itertools
import shlex
import statistics

import numpy as np
import torch

from l2t_fairseq.benchmark.command_lines import after
from l2t_fairseq.diagnostics import frequency_ranks
from l2t_fairseq.teacher.model import Teacher, default_phi_init

TITLE = "# What the online teachers learned (`l2t_dlf`, the last logged Phi of each seed)"
TOP = 100  # the most frequent target words whose coefficients are compared between seeds
NULL_SEEDS = 5
SHOWN = 5  # words weighted up and down most
MOVED = 0.1  # a coefficient more than this fraction from its initial value has moved


def flag(command, name, default, kind=float):
    """A flag's value in a recorded fairseq-train command (the last one given), else ``default``."""
    value = after(shlex.split(command) if isinstance(command, str) else list(command), name)
    return default if value is None else kind(value)


def relative(phi, frequency):
    """``Phi`` over the mean coefficient of the words that occur as training targets."""
    return np.asarray(phi, dtype=np.float64) / target_words(phi, frequency).mean()


def target_words(phi, frequency):
    """The coefficients of the words that occur as training targets."""
    return np.asarray(phi, dtype=np.float64)[frequency.numpy() > 0]


def from_initial(phi, phi_init, frequency):
    """Over the words that occur as training targets: the mean coefficient over the initial one, and the share of
    the words whose coefficient is more than ``MOVED`` from it."""
    ratio = target_words(phi, frequency) / phi_init
    return float(ratio.mean()), float((np.abs(ratio - 1) > MOVED).mean())


def spread(phi, frequency):
    values = target_words(phi, frequency)
    return float(values.std(ddof=1) / values.mean())


def null_spread(steps, states, vocab_size, frequency, lr, keys=5, parametrization="exp", phi_init=None, seed=1):
    """The spread of ``Phi`` after ``steps`` Adam steps of a fresh teacher along random hypergradients, each step at
    the recorded state it was taken at (``states``), the last ``Phi`` at the last state."""
    teacher = Teacher(vocab_size, num_keys=keys, phi_init=phi_init or default_phi_init(vocab_size),
                      parametrization=parametrization, seed=seed)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for state in states[:steps]:
        optimizer.zero_grad()
        phi = teacher(torch.tensor(state))
        phi.backward(torch.randn(vocab_size, generator=generator, dtype=phi.dtype))
        optimizer.step()
    with torch.no_grad():
        return spread(teacher(torch.tensor(states[-1])).numpy(), frequency)


def spearman(a, b):
    from scipy.stats import spearmanr  # scikit-learn's dependency; needed by the report alone

    return float(spearmanr(a, b).statistic)


def learned(logs, phis, commands, dictionary, frequency):
    """The markdown lines: ``logs[seed]``: the run's records; ``phis[seed]``: its (record, Phi) rows;
    ``commands[seed]``: its fairseq-train command."""
    seeds = [seed for seed in sorted(logs) if phis.get(seed)]
    if not seeds:
        return []
    ranked = frequency_ranks(frequency)[:TOP].numpy()
    final = {seed: relative(phis[seed][-1][1], frequency) for seed in seeds}
    lines = ["| seed | teacher steps | last Phi at update | mean Phi / initial | words moved > "
             f"{MOVED:.0%} from initial | spread (std / mean) | null spread (random hypergradients, {NULL_SEEDS} "
             "draws) |", "|---|---|---|---|---|---|---|"]
    for seed in seeds:
        steps = [r for r in logs[seed] if "dev_expected_bleu" in r and not r.get("skipped")]
        command = commands.get(seed, "")
        lr = flag(command, "--teacher-lr", 0.03)
        parametrization = flag(command, "--teacher-parametrization", "exp", str)
        keys = flag(command, "--teacher-keys", 5, int)
        phi_init = flag(command, "--phi-init", None)
        scale, moved = from_initial(phis[seed][-1][1], phi_init or default_phi_init(len(dictionary)), frequency)
        states = [r["state"] for r in steps]
        null = [null_spread(len(steps), states, len(dictionary), frequency, lr, keys, parametrization, phi_init,
                            seed=s) for s in range(1, NULL_SEEDS + 1)] if states else []
        null_text = f"{statistics.mean(null):.3f} ({min(null):.3f}-{max(null):.3f})" if null else "n/a"
        lines.append(f"| {seed} | {len(steps)} | {phis[seed][-1][0]['update']} | {scale:.3f} | {moved:.1%} "
                     f"| {spread(phis[seed][-1][1], frequency):.3f} | {null_text} |")
    pairs = list(itertools.combinations(seeds, 2))
    if pairs:
        rho = {pair: spearman(final[pair[0]][ranked], final[pair[1]][ranked]) for pair in pairs}
        lines += ["", f"Agreement between seeds on the {len(ranked)} most frequent target words (Spearman's rank "
                  "correlation of their relative coefficients): "
                  + ", ".join(f"seeds {a} and {b}: {r:.2f}" for (a, b), r in rho.items()) + "."]
    mean = np.mean([final[seed][ranked] for seed in seeds], axis=0)
    order = np.argsort(mean, kind="stable")
    lines += ["", f"Among the {len(ranked)} most frequent target words, the teachers' relative coefficients "
              "(1 = the mean over all target words), per seed:", "",
              "| word | frequency rank | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|---|" + "---|" * len(seeds)]
    rank = {int(word): i + 1 for i, word in enumerate(ranked)}
    for index in [*order[::-1][:SHOWN], *order[:SHOWN]]:
        word = int(ranked[index])
        lines.append(f"| `{dictionary[word]}` | {rank[word]} | "
                     + " | ".join(f"{final[s][word]:.2f}" for s in seeds) + " |")
    return lines
