"""The student's loss against cross-entropy's on the same log-probabilities: forward and backward, one thread.

    python scripts/bench_loss.py [--tokens 3400] [--vocab 7884] [--repeats 7]

Times ``log_softmax`` + loss + backward for ``l2t_dlf``'s loss (``dynamic_loss``, with
``token_mean`` coefficients) and for fairseq's cross-entropy (``nll_loss`` with
``ignore_index``) on random logits with some padding, and prints the medians and
their ratio.  The defaults are a Multi30k batch of the benchmark (4,096-token
batches hold about 3,400 target tokens; 7,884 joint BPE words).
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from l2t_fairseq.unroll.loss import dynamic_loss

PAD = 1


def cross_entropy(lprobs, target):
    return F.nll_loss(lprobs.reshape(-1, lprobs.size(-1)), target.reshape(-1), ignore_index=PAD, reduction="sum")


def l2t(lprobs, target, phi):
    return dynamic_loss(lprobs, target, phi, PAD, coefficient_mean=phi.mean().item())[0]


def median_seconds(loss, logits, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss(F.log_softmax(logits, dim=-1)).backward()
        logits.grad = None
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=3400)
    parser.add_argument("--vocab", type=int, default=7884)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sentences = max(1, args.tokens // 20)
    logits = torch.randn(sentences, 20, args.vocab, requires_grad=True)
    target = torch.randint(PAD + 1, args.vocab, (sentences, 20))
    target[:, -3:] = PAD  # some padding, as in a real batch
    phi = torch.rand(args.vocab) + 0.05
    ce = median_seconds(lambda lprobs: cross_entropy(lprobs, target), logits, args.repeats)
    dlf = median_seconds(lambda lprobs: l2t(lprobs, target, phi), logits, args.repeats)
    print(f"log_softmax + loss + backward, {sentences * 20} tokens x {args.vocab} words, one thread:")
    print(f"  cross_entropy {ce * 1000:.0f} ms, l2t_dlf {dlf * 1000:.0f} ms, ratio {dlf / ce:.2f}")


if __name__ == "__main__":
    main()
