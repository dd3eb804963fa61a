#!/bin/sh
# make bench: razor's speed on fixed configurations (random weights; speed does not depend on them).
#  1. a model of llama2.c's stories15M shape (dim 288, 6 layers, 6 heads, hidden 768) with this
#     repository's 512-piece vocabulary: a 1000-token prompt, then 256 generated tokens, with the
#     file's fp32 weights, with -w bf16, and from a q8 file of the same shape (tests/make_random_model.py,
#     with $PYTHON's numpy; skipped without it);
#  2. the tokenizer on a 100 KB prompt;
#  3. generation under the full cache and under razor's, after prompts of growing length, on the
#     same shape with a 16384-token context (where attention dominates); then a generation that
#     runs on from a 12K-token prompt to the full 16K context, where razor's windows slide;
#  4. the full cache at 8K tokens with keys and values in float32, bfloat16 (the default) and half.
set -e
cd "$(dirname "$0")/.."
tmp=${TMPDIR:-/tmp}/razor_bench
mkdir -p "$tmp"
threads=${THREADS:-$(nproc)}
isa=$(./razor -h | sed -n 's/^built for \([^:]*\):.*/\1/p')
echo "razor built for $isa; CPU:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
./test_razor --random-model "$tmp/m15.bin" 288 768 6 6 6 512 2048
echo "== stories15M shape, $threads threads: 1000-token prompt, 256 new tokens"
for w in f32 bf16; do
    printf '%-5s %s\n' "$w" "$(./razor "$tmp/m15.bin" -z tests/sp512/tokenizer.bin -t 0 -n 256 -T "$threads" -c full -w $w -f tests/bench_prompt.txt 2>&1 >/dev/null | grep tok/s)"
done
if ${PYTHON:-python3} tests/make_random_model.py "$tmp/m15q8.bin" --dim 288 --hidden 768 --layers 6 --heads 6 \
        --kv-heads 6 --vocab 512 --seq-len 2048 --dtype q8 > /dev/null 2>&1; then
    printf '%-5s %s\n' q8 "$(./razor "$tmp/m15q8.bin" -z tests/sp512/tokenizer.bin -t 0 -n 256 -T "$threads" -c full -f tests/bench_prompt.txt 2>&1 >/dev/null | grep tok/s)"
else
    echo "q8    SKIPPED (tests/make_random_model.py needs numpy: PYTHON=/usr/bin/python3)"
fi
echo "== tokenizer: 100 KB prompt"
for i in $(seq 50); do cat tests/bench_prompt.txt; done > "$tmp/100k.txt"
./razor "$tmp/m15.bin" -z tests/sp512/tokenizer.bin -m tokenize -f "$tmp/100k.txt" 2>&1 >/dev/null
echo "== full vs razor generation (128 new tokens) after long prompts, $threads threads"
./test_razor --random-model "$tmp/long.bin" 288 768 6 6 6 512 16384
./razor "$tmp/long.bin" -z tests/sp512/tokenizer.bin -m profile -s 1 -T "$threads" > /dev/null 2>&1
for k in 2 4 8 16; do
    for i in $(seq $k); do cat tests/bench_prompt.txt; done > "$tmp/prompt.txt"
    for policy in full razor; do
        out=$(./razor "$tmp/long.bin" -z tests/sp512/tokenizer.bin -t 0 -n 128 -T "$threads" -c $policy -f "$tmp/prompt.txt" 2>&1 >/dev/null)
        printf '%-6s %s | %s\n' "$policy" "$(echo "$out" | grep tok/s)" "$(echo "$out" | grep 'kv cache')"
    done
done
# C = 7 instead of 5: under 30% of the full cache when a sixth of the KV heads keep everything
out=$(./razor "$tmp/long.bin" -z tests/sp512/tokenizer.bin -t 0 -n 128 -T "$threads" -c razor -C 7 -f "$tmp/prompt.txt" 2>&1 >/dev/null)
printf '%-6s %s | %s\n' "razor, C = 7" "$(echo "$out" | grep tok/s)" "$(echo "$out" | grep 'kv cache')"
# 12K-token prompt, then generation up to the 16K context: the full cache grows, razor's compressed
# heads stay at sinks + 1 + N / 5
for i in $(seq 12); do cat tests/bench_prompt.txt; done > "$tmp/prompt.txt"
for policy in full razor; do
    out=$(./razor "$tmp/long.bin" -z tests/sp512/tokenizer.bin -t 0 -n 16384 -T "$threads" -c $policy -f "$tmp/prompt.txt" 2>&1 >/dev/null)
    printf '%-6s %s | %s\n' "$policy" "$(echo "$out" | grep tok/s)" "$(echo "$out" | grep 'kv cache')"
done
echo "== the full cache after an 8K-token prompt (128 new tokens), keys and values in each type, $threads threads"
for i in $(seq 8); do cat tests/bench_prompt.txt; done > "$tmp/prompt.txt"
for kv in f32 bf16 f16; do
    out=$(./razor "$tmp/long.bin" -z tests/sp512/tokenizer.bin -t 0 -n 128 -T "$threads" -c full -K $kv -f "$tmp/prompt.txt" 2>&1 >/dev/null)
    printf '%-6s %s | %s\n' "-K $kv" "$(echo "$out" | grep tok/s)" "$(echo "$out" | grep 'kv cache')"
done
