#!/usr/bin/env bash
# Test BLEU of a checkpoint: fairseq-generate with beam 5 and BPE removed, reported as
#  - tokenized BLEU (fairseq's BLEU4 on the tokenized, lowercased text, as the paper reports), and
#  - sacreBLEU on text detokenized with sacremoses (hypotheses and references alike).
# Usage: examples/iwslt14/evaluate.sh CHECKPOINT [DATA] [--spm] [extra fairseq-generate flags]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CHECKPOINT=${1:?usage: evaluate.sh CHECKPOINT [DATA] [--spm] [fairseq-generate flags]}
shift
DATA=data/iwslt14/bin
if [[ $# -gt 0 && "$1" != --* ]]; then DATA=$1; shift; fi
REMOVE_BPE=subword_nmt
if [[ $# -gt 0 && "$1" == --spm ]]; then REMOVE_BPE=sentencepiece; shift; fi
[[ -f "$CHECKPOINT" ]] || { echo "evaluate.sh: error: CHECKPOINT $CHECKPOINT: no such file" >&2; exit 2; }
[[ -f "$DATA/dict.en.txt" ]] || { echo "evaluate.sh: error: DATA $DATA: no binarized data" >&2; exit 2; }
PY=${PYTHON:-python3}  # the active environment
OUT="${CHECKPOINT%.pt}.test"
CPU=()
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || CPU=(--cpu)

"$PY" -m fairseq_cli.generate "$DATA" --user-dir "$ROOT/l2t_fairseq" --path "$CHECKPOINT" --gen-subset test \
    --beam 5 --remove-bpe "$REMOVE_BPE" --max-len-a 1.2 --max-len-b 10 --batch-size 128 "${CPU[@]}" "$@" \
    > "$OUT.generate.log" 2> "$OUT.generate.err" || { tail -5 "$OUT.generate.err" >&2; exit 1; }
grep -E '^H-' "$OUT.generate.log" | sort -t- -k2 -n | cut -f3 > "$OUT.hyp.tok"
grep -E '^T-' "$OUT.generate.log" | sort -t- -k2 -n | cut -f2 > "$OUT.ref.tok"
"$PY" -m sacremoses -l en detokenize < "$OUT.hyp.tok" > "$OUT.hyp.detok"
"$PY" -m sacremoses -l en detokenize < "$OUT.ref.tok" > "$OUT.ref.detok"
echo "tokenized BLEU (fairseq, beam 5): $(grep -oE 'BLEU4 = [0-9.]+' "$OUT.generate.log" | cut -d' ' -f3)"
echo "sacreBLEU (detokenized): $("$PY" -m sacrebleu "$OUT.ref.detok" -i "$OUT.hyp.detok" -b -w 2)"
