#!/bin/bash
# razor against llama.cpp on the same random weights, the same machine, the same run: for each shape and
# weight type, the 996-token prompt tests/llama2c_prompt.txt and 256 generated tokens; then generation of
# 128 tokens after long prompts. Runs alternate (llama.cpp, razor, llama.cpp, ...), 2 threads each, and
# each figure is the median of RUNS (default 3). Run it on an idle machine, from the repository root,
# after make razor:
#     tests/compare_llamacpp.sh LLAMA_CPP_BUILD_DIR TOKENIZER_BIN
# LLAMA_CPP_BUILD_DIR: a llama.cpp build (cmake -B build -DGGML_NATIVE=ON; cmake --build build --target
#   llama-bench llama-batched-bench llama-quantize llama-convert-llama2c-to-ggml), its bin/ folder.
# TOKENIZER_BIN: Llama 2's tokenizer.bin (llama2.c ships it; llama.cpp's converter copies its vocabulary).
# The converter holds the whole model in a memory pool of mem_model_gb = 2 GB (its source): for the 1.1B
# shape in float32 (4.1 GB) raise it to 8 and rebuild it; the script says so if the conversion fails.
# The llama2.c files are made once by tests/make_llama2c_models.py in $TMPDIR/razor_llamacpp; llama.cpp's
# GGUF files from them by its own converter and quantizer (F32, BF16, Q8_0), razor's by export.py --bin
# --dtype (f32 is the llama2.c file itself).
# MODELS (default "m15 m110 m1b"; "" skips them), TYPES (default "f32 bf16 q8"; m1b runs bf16 and q8 only), LONG (the
# long prompts in tokens, default "4096 16384"; "" skips them) pick what runs. RAZOR: the razor binary
# (default ./razor), e.g. one built with -march=x86-64-v3 to measure AVX2 on an AVX-512 machine (then
# build llama.cpp with -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON as well).
set -eu
bin=$1 tok=$2
rz=${RAZOR:-./razor} py=${PYTHON:-/usr/bin/python3} runs=${RUNS:-3}
isa=$("$rz" -h | sed -n 's/^built for \([^:]*\):.*/\1/p')
echo "razor ($rz) built for $isa; llama.cpp $(cd "$bin/../.." 2>/dev/null && git rev-parse --short HEAD 2>/dev/null ||
    echo "in $bin"); CPU:$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); $(date -u +%F)"
dir=${TMPDIR:-/tmp}/razor_llamacpp
mkdir -p "$dir"
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", b / a}'; }
declare -A ggml=([f32]=F32 [bf16]=BF16 [q8]=Q8_0)

# the files: NAME.bin (llama2.c), NAME-TYPE.gguf (llama.cpp), NAME-TYPE.rz (razor), made once
files() {
    local m=$1 t=$2
    [ -f "$dir/$m.bin" ] || "$py" tests/make_llama2c_models.py "$dir" "$m" >&2
    if [ ! -f "$dir/$m-f32.gguf" ] && ! "$bin/llama-convert-llama2c-to-ggml" --copy-vocab-from-model "$tok" \
        --llama2c-model "$dir/$m.bin" --llama2c-output-model "$dir/$m-f32.gguf" >"$dir/convert.log" 2>&1; then
        echo "llama-convert-llama2c-to-ggml failed on $m.bin: $(grep -m1 -E 'not enough space|error' "$dir/convert.log")" >&2
        echo "(for m1b: raise mem_model_gb from 2 to 8 in its source, examples/convert-llama2c-to-ggml, and rebuild)" >&2
        rm -f "$dir/$m-f32.gguf"
        exit 1
    fi
    [ -f "$dir/$m-$t.gguf" ] || "$bin/llama-quantize" "$dir/$m-f32.gguf" "$dir/$m-$t.gguf" "${ggml[$t]}" >"$dir/quantize.log" 2>&1
    if [ $t = f32 ]; then ln -sf "$m.bin" "$dir/$m-f32.rz"
    elif [ ! -f "$dir/$m-$t.rz" ]; then "$py" export.py "$dir/$m-$t.rz" --bin "$dir/$m.bin" --dtype $t >&2; fi
    [ "$tok" -ef "$dir/tokenizer.bin" ] || cp -f "$tok" "$dir/tokenizer.bin"
}

# tokens per second: llama-bench's average of one repetition; razor's own figure (prompt or generation)
speed_lc() { "$bin/llama-bench" -m "$1" -t 2 -r 1 -o jsonl "${@:2}" 2>/dev/null | sed -n 's/.*"avg_ts": *\([0-9.]*\).*/\1/p' | tail -1; }
speed_rz() { "$rz" "$1" -z "$dir/tokenizer.bin" -t 0 -T 2 -c full -n "$2" "${@:4}" 2>&1 >/dev/null |
    grep -oE '[0-9.]+ tok/s' | sed -n "$3p" | cut -d' ' -f1; }

prompt=$(cat tests/llama2c_prompt.txt)
printf '%-5s %-5s %-10s %10s %10s %7s\n' model type test llama.cpp razor ratio
for m in ${MODELS-m15 m110 m1b}; do
    for t in ${TYPES:-f32 bf16 q8}; do
        [ $m = m1b ] && [ $t = f32 ] && continue
        files $m $t
        for test in prompt generation; do
            a=() b=()
            for i in $(seq "$runs"); do
                if [ $test = prompt ]; then
                    a+=("$(speed_lc "$dir/$m-$t.gguf" -p 996 -n 0)")
                    b+=("$(speed_rz "$dir/$m-$t.rz" 1 1 -i "$prompt")")
                else
                    a+=("$(speed_lc "$dir/$m-$t.gguf" -p 0 -n 256)")
                    b+=("$(speed_rz "$dir/$m-$t.rz" 256 2 -i "Once upon a time")")
                fi
            done
            x=$(median "${a[@]}") y=$(median "${b[@]}")
            printf '%-5s %-5s %-10s %10.1f %10.1f %7s\n' $m $t $test "$x" "$y" "$(ratio "$x" "$y")"
        done
    done
done

# Long context: stories110M's shape with a 16K context, f32 weights; 128 tokens generated after a prompt
# of D tokens. llama.cpp: llama-batched-bench (its S_TG), f16 keys and values, with and without -fa.
# razor: -c full and -c razor (bf16 keys and values; the head profile is razor's default, made by its
# probe on the first run and kept in $dir/m110_16k.bin.heads). The prompt: tests/llama2c_prompt.txt over
# and over, cut to D tokens (razor's -m tokenize).
[ -n "${LONG-4096 16384}" ] || exit 0
m=m110_16k
files $m f32
heads="$dir/$m.bin.heads"
if [ ! -f "$heads" ]; then
    start=$(date +%s)
    "$rz" "$dir/$m.bin" -z "$dir/tokenizer.bin" -T 2 -m profile -o "$heads" >/dev/null 2>&1
    echo "razor's probe of the 16K context took $(($(date +%s) - start)) s"
fi
long_text() { # $1 tokens of text: words of the prompt, repeated, as many as give exactly $1 tokens or fewer
    local want=$1 words text n lo hi mid
    words=$(for i in $(seq 40); do cat tests/llama2c_prompt.txt; done | tr -s ' \n' '  ')
    lo=1 hi=$(echo "$words" | wc -w)
    while [ $lo -lt $hi ]; do
        mid=$(((lo + hi + 1) / 2))
        text=$(echo "$words" | cut -d' ' -f1-$mid)
        n=$("$rz" "$dir/$m.bin" -z "$dir/tokenizer.bin" -m tokenize -i "$text" 2>/dev/null | wc -w)
        if [ "$n" -le "$want" ]; then lo=$mid; else hi=$((mid - 1)); fi
    done
    echo "$words" | cut -d' ' -f1-$lo
}
printf '\n%-6s %10s %10s %10s %10s %10s %9s\n' prompt "llama.cpp" "-fa" "razor full" "razor" "ratio" "kv bytes"
for D in ${LONG-4096 16384}; do
    text=$(long_text $((D < 16384 - 128 ? D : 16384 - 128))) # room for the 128 tokens in the 16K context
    n=$("$rz" "$dir/$m.bin" -z "$dir/tokenizer.bin" -m tokenize -i "$text" 2>/dev/null | wc -w)
    a=() f=() b=() c=()
    for i in $(seq "$runs"); do
        for fa in "" -fa; do
            s=$("$bin/llama-batched-bench" -m "$dir/$m-f32.gguf" -c $((n + 128)) -b 2048 -ub 512 -npp $n -ntg 128 \
                -npl 1 -t 2 $fa 2>&1 | awk -F'|' -v n=$n '$2 + 0 == n {gsub(/ /, "", $9); print $9}')
            if [ -z "$fa" ]; then a+=("$s"); else f+=("$s"); fi
        done
        b+=("$(speed_rz "$dir/$m.bin" 128 2 -i "$text")")
        line=$("$rz" "$dir/$m.bin" -z "$dir/tokenizer.bin" -t 0 -T 2 -c razor -k "$heads" -n 128 -i "$text" 2>&1 >/dev/null)
        c+=("$(echo "$line" | grep -oE '[0-9.]+ tok/s' | sed -n 2p | cut -d' ' -f1)")
        kv=$(echo "$line" | sed -n 's/^kv cache: .*(\([0-9.]*%\) of.*/\1/p')
    done
    x=$(median "${a[@]}") y=$(median "${f[@]}") z=$(median "${b[@]}") w=$(median "${c[@]}")
    best=$(awk -v a="$x" -v b="$y" 'BEGIN {print (a > b ? a : b)}')
    printf '%-6s %10.1f %10.1f %10.1f %10.1f %10s %9s\n' $n "$x" "$y" "$z" "$w" "$(ratio "$best" "$w")" "$kv"
done
echo "(ratio: razor -c razor over the faster of llama.cpp with and without -fa; kv bytes: razor's, of the full cache)"
