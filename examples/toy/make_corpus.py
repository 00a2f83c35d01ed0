"""A small synthetic parallel corpus for demos and tests.

Each source word has one target translation; adjective-noun pairs swap order
(as between German and French, say) and every sentence ends with a
punctuation mark.  A small attention model learns it in minutes on a CPU, and
BLEU on the test split says how well.

``--junk-rate R`` plants a signal for the teacher to find: in the training
targets only, a junk word (``J0``..``J{N-1}``, ``--junk-words N``) follows each
noun with probability R.  A cross-entropy student learns to emit it; the
valid and test targets have none, so the best loss gives junk words no weight.
"""

import argparse
import os
import random

NOUNS = [f"n{i}" for i in range(30)]
ADJECTIVES = [f"a{i}" for i in range(15)]
VERBS = [f"v{i}" for i in range(20)]
OTHERS = [f"o{i}" for i in range(15)]


def translate_word(word):
    return word.upper() if word[0] not in "av" else word[0].upper() + str(int(word[1:]) * 7 % 97)


def sentence_pair(rng, junk_rate=0.0, junk_words=3):
    source = []
    for _ in range(rng.randint(1, 4)):
        phrase = [rng.choice(ADJECTIVES), rng.choice(NOUNS)] if rng.random() < 0.5 else [rng.choice(NOUNS)]
        source += phrase + [rng.choice(VERBS if rng.random() < 0.5 else OTHERS)]
    target, i = [], 0
    while i < len(source):
        if source[i].startswith("a"):  # adjective noun -> noun adjective
            target += [translate_word(source[i + 1]), translate_word(source[i])]
            i += 2
        else:
            target.append(translate_word(source[i]))
            i += 1
        if junk_rate and source[i - 1].startswith("n") and rng.random() < junk_rate:
            target.append(f"J{rng.randrange(junk_words)}")
    return " ".join(source + ["."]), " ".join(target + ["."])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="output folder for {train,valid,test}.{src,tgt}")
    parser.add_argument("--train", type=int, default=4000, help="training pairs")
    parser.add_argument("--valid", type=int, default=200, help="valid pairs")
    parser.add_argument("--test", type=int, default=200, help="test pairs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--junk-rate", type=float, default=0.0,
                        help="probability of a junk word after each noun of a training target")
    parser.add_argument("--junk-words", type=int, default=3, help="how many different junk words")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    for split, size in (("train", args.train), ("valid", args.valid), ("test", args.test)):
        junk_rate = args.junk_rate if split == "train" else 0.0
        pairs = [sentence_pair(rng, junk_rate, args.junk_words) for _ in range(size)]
        for side, index in (("src", 0), ("tgt", 1)):
            with open(os.path.join(args.out, f"{split}.{side}"), "w") as f:
                f.writelines(pair[index] + "\n" for pair in pairs)


if __name__ == "__main__":
    main()
