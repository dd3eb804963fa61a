#!/bin/sh
# Makes the shipped model from a fresh clone, in one command:
#     train/make_model.sh
# the corpus (train/corpus.py), the byte-level tokenizer.bin (train/tokenizer.py --bytes), training
# (train/train.py: 4000 steps of 8192 tokens with the curriculum; about an hour on 2 cores), the
# export to model.bin (export.py) and its head profile model.bin.heads (razor -m profile).
# Progress, with held-out copy and pass-key accuracy every 250 steps: tail -f train/data/ship/log.txt
# Resumable: after an interruption, run it again and training continues from its last checkpoint.
# Deterministic for a seed on a given machine (bf16 autocast is chosen from the CPU, see train.py).
# PYTHON: the interpreter with torch and numpy (default /usr/bin/python3, Debian's python3-torch).
set -e
cd "$(dirname "$0")/.."
py=${PYTHON:-/usr/bin/python3}
out=train/data/ship
mkdir -p "$out"
[ -f train/data/austen.txt ] && [ -f train/data/web.txt ] || "$py" train/corpus.py
"$py" train/tokenizer.py --bytes
resume=
[ -f "$out/ckpt.pt" ] && resume=--resume
echo "training; follow it with: tail -f $out/log.txt"
OMP_WAIT_POLICY=PASSIVE "$py" train/train.py --bytes --curriculum --dim 128 --layers 6 --heads 4 --kv-heads 4 \
    --hidden 352 --seq-len 512 --batch 16 --steps 4000 --lr 3e-3 --seed 1 --out "$out" \
    --eval-every 250 --log-every 50 --ckpt-every 100 $resume >> "$out/log.txt" 2>&1 ||
    { tail -5 "$out/log.txt"; exit 1; }
grep 'val loss' "$out/log.txt" | tail -1
"$py" export.py model.bin --hf "$out/hf"
make -s razor
./razor model.bin -m profile
