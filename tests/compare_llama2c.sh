#!/bin/bash
# The README's comparison with llama2.c: greedy generation of 256 tokens after "Once upon a time", and
# the 996-token prompt tests/llama2c_prompt.txt, both programs on the same llama2.c files, 2 threads,
# runs alternated (llama2.c, razor, llama2.c, ...), medians of RUNS (default 5). Run it on an idle
# machine, from the repository root, after make razor:
#     tests/compare_llama2c.sh LLAMA2C_RUN TOKENIZER_BIN [razor flags, e.g. -w bf16]
# LLAMA2C_RUN: llama2.c's run.c built  gcc -Ofast -fopenmp -march=native run.c -lm -o run
# TOKENIZER_BIN: Llama 2's tokenizer.bin (llama2.c ships it). The model files are made once by
# tests/make_llama2c_models.py in $TMPDIR/razor_llama2c (MODELS="m15 m110" picks them).
# RAZOR: the razor binary (default ./razor), e.g. one built with -march=x86-64-v3 to measure AVX2 on an
# AVX-512 machine (then build llama2.c with the same flag).
set -eu
ll=$1 tok=$2
shift 2
rz=${RAZOR:-./razor}
isa=$("$rz" -h | sed -n 's/^built for \([^:]*\):.*/\1/p')
echo "razor ($rz) built for $isa; CPU:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
dir=${TMPDIR:-/tmp}/razor_llama2c
mkdir -p "$dir"
[ -f "$dir/m110.bin" ] || ${PYTHON:-/usr/bin/python3} tests/make_llama2c_models.py "$dir"
prompt=$(cat tests/llama2c_prompt.txt)
export OMP_NUM_THREADS=2
speed_ll() { "$ll" "$dir/$1.bin" -z "$tok" -t 0 -n "$2" -i "$3" 2>&1 >/dev/null | sed -n 's/^achieved tok\/s: \([0-9.]*\).*/\1/p'; }
speed_rz() { "$rz" "$dir/$1.bin" -z "$tok" -t 0 -n "$2" -i "$3" -T 2 -c full "${@:5}" 2>&1 >/dev/null | grep -oE '[0-9.]+ tok/s' | sed -n "$4p" | cut -d' ' -f1; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
printf '%-6s %-10s %10s %10s %7s\n' model test llama2.c razor ratio
for m in ${MODELS:-m15 m110}; do
    # llama2.c's -n counts the prompt: 257 = 5 prompt tokens + 252 generated, i.e. 256 forward passes
    # after the first token; for the prompt, 997 = the 996 prompt tokens + 1, i.e. 996 forward passes.
    for test in generation prompt; do
        a=() b=()
        for i in $(seq "${RUNS:-5}"); do
            if [ $test = generation ]; then
                a+=("$(speed_ll $m 257 "Once upon a time")") b+=("$(speed_rz $m 256 "Once upon a time" 2 "$@")")
            else
                a+=("$(speed_ll $m 997 "$prompt")") b+=("$(speed_rz $m 1 "$prompt" 1 "$@")")
            fi
        done
        x=$(median "${a[@]}") y=$(median "${b[@]}")
        awk -v m=$m -v t=$test -v x="$x" -v y="$y" 'BEGIN {printf "%-6s %-10s %10.1f %10.1f %6.2fx\n", m, t, x, y, y / x}'
    done
done
