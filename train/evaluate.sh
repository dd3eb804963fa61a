#!/bin/sh
# What the shipped model shows, measured with razor's own tools (the README's "shipped model" figures):
#     train/evaluate.sh [MODEL]          (default model.bin, with MODEL.heads as -m profile wrote it)
# 1. the head profile and its picture (docs/heads.svg);
# 2. the pass-key test with the built-in filler and with held-out text (docs/heldout_filler.txt, never
#    trained on), every policy with the question in the prompt and asked after compression: the
#    summary tables, pictures in docs/needle_<policy>_<setting>.svg (built-in filler) and
#    docs/heldout_<policy>_<setting>.svg;
# 3. the same with the retrieval heads forced to COMPRESSED (RETRIEVAL -> COMPRESSED in a copy of the
#    profile): what the retrieval heads are worth;
# 4. razor, nocomp, streaming, snapkv and h2o against the full cache on a held-out passage (-m compare): the
#    start of docs/heldout_passage.txt, cut at the last space before byte 430 (429 bytes), so that 64
#    steps fit the context.
set -e
cd "$(dirname "$0")/.."
model=${1:-model.bin}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s razor
./razor "$model" -m profile -o "$tmp/profile.heads" 2>&1 | grep -v '^profiling'
cmp -s "$tmp/profile.heads" "$model.heads" || echo "note: $model.heads differs from what -m profile writes now"
cp "$tmp/profile.heads.svg" docs/heads.svg
echo "== needle, built-in filler"
./razor "$model" -m needle -o docs/needle 2>/dev/null | tail -8
echo "== needle, held-out filler (docs/heldout_filler.txt)"
./razor "$model" -m needle -f docs/heldout_filler.txt -o docs/heldout 2>/dev/null | tail -8
sed "s/ RETRIEVAL/ COMPRESSED/g" "$model.heads" > "$tmp/forced.heads"
echo "== needle, built-in filler, the retrieval heads forced to COMPRESSED"
./razor "$model" -m needle -k "$tmp/forced.heads" -o "$tmp/forced" 2>/dev/null | tail -8
echo "== needle, held-out filler, the retrieval heads forced to COMPRESSED"
./razor "$model" -m needle -k "$tmp/forced.heads" -f docs/heldout_filler.txt -o "$tmp/forced2" 2>/dev/null | tail -8
rm -f docs/needle.jsonl docs/heldout.jsonl
echo "== compare on docs/heldout_passage.txt cut at the last space before byte 430, 64 greedy steps"
head -c 430 docs/heldout_passage.txt | sed 's/ [^ ]*$//' > "$tmp/passage.txt"
for policy in razor nocomp streaming snapkv h2o; do
    ./razor "$model" -m compare -c $policy -f "$tmp/passage.txt" -n 64 2>/dev/null | tail -1
done
