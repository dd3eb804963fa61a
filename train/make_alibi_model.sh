#!/bin/sh
# Makes docs/alibi/model.bin, the ALiBi twin of the shipped model, in one command:
#     train/make_alibi_model.sh
# the same corpus, byte vocabulary, shape, curriculum and seed as train/make_model.sh, with ALiBi in
# place of RoPE (train.py --alibi: written in Baichuan's layout, exported with export.py --alibi), then
# its head profile (the span rule: no probe) and the pass-key test. About an hour on 2 cores;
# resumable like make_model.sh. Progress: tail -f train/data/alibi/log.txt
set -e
cd "$(dirname "$0")/.."
py=${PYTHON:-/usr/bin/python3}
out=train/data/alibi
mkdir -p "$out" docs/alibi
[ -f train/data/austen.txt ] && [ -f train/data/web.txt ] || "$py" train/corpus.py
"$py" train/tokenizer.py --bytes
resume=
[ -f "$out/ckpt.pt" ] && resume=--resume
echo "training; follow it with: tail -f $out/log.txt"
OMP_WAIT_POLICY=PASSIVE "$py" train/train.py --bytes --curriculum --alibi --dim 128 --layers 6 --heads 4 \
    --kv-heads 4 --hidden 352 --seq-len 512 --batch 16 --steps 4000 --lr 3e-3 --seed 1 --out "$out" \
    --eval-every 250 --log-every 50 --ckpt-every 100 $resume >> "$out/log.txt" 2>&1 ||
    { tail -5 "$out/log.txt"; exit 1; }
grep 'val loss' "$out/log.txt" | tail -1
"$py" export.py docs/alibi/model.bin --hf "$out/hf" --alibi
make -s razor
./razor docs/alibi/model.bin -z tokenizer.bin -m profile
./razor docs/alibi/model.bin -z tokenizer.bin -m needle -o docs/alibi/needle | tail -1
