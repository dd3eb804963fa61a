#!/bin/sh
# Builds the harnesses (make -C fuzz) and fuzzes each in turn, niced, one process at a time.
#     fuzz/run.sh [-t SECONDS | -n RUNS] [HARNESS...]      default: -t 60, all of
#     model tokenizer encode encode_bbpe profile ids
# Working corpora grow in fuzz/build/work/<h> (the seeds in fuzz/corpus/<h> stay as they are), logs
# in fuzz/build/logs/<h>/fuzz-0.log, crashes in fuzz/build/artifacts/<h>-*. Exits 1 if any harness
# left a crash, leak, timeout or OOM, or a sanitizer report. SKIP_KNOWN_BUGS=1 fuzz/run.sh ... runs
# harnesses built with -DSKIP_KNOWN_BUGS (fuzz/build/skip/), which step around reported bugs.
set -e
cd "$(dirname "$0")"
here=$PWD
secs=60 runs=-1
while getopts t:n: opt; do
    case $opt in
    t) secs=$OPTARG ;;
    n) runs=$OPTARG secs=0 ;;
    *) echo "usage: $0 [-t SECONDS | -n RUNS] [model tokenizer encode encode_bbpe profile ids]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
names=${*:-model tokenizer encode encode_bbpe profile ids}
bin=build
[ -n "$SKIP_KNOWN_BUGS" ] && bin=build/skip
make -s BUILD=$bin EXTRA="${SKIP_KNOWN_BUGS:+-DSKIP_KNOWN_BUGS}" $(for h in $names; do printf '%s/fuzz_%s ' $bin "$h"; done)
status=0
for h in $names; do
    mkdir -p "build/work/$h" "build/logs/$h" build/artifacts
    rm -f "build/logs/$h/fuzz-0.log"
    dict=
    [ -f "dict/$h.dict" ] && dict="-dict=$here/dict/$h.dict"
    before=$(ls build/artifacts | grep -v slow-unit | grep -c "^$h-" || true)
    (cd "build/logs/$h" && nice -n 10 "$here/$bin/fuzz_$h" "$here/build/work/$h" "$here/corpus/$h" $dict \
        -jobs=1 -workers=1 -timeout=5 -rss_limit_mb=2048 -max_total_time="$secs" -runs="$runs" \
        -print_final_stats=1 -artifact_prefix="$here/build/artifacts/$h-" >/dev/null 2>&1) || true
    log=build/logs/$h/fuzz-0.log
    after=$(ls build/artifacts | grep -v slow-unit | grep -c "^$h-" || true)  # slow units: not failures
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    if [ "$after" != "$before" ] || grep -qE '==ERROR|runtime error|ERROR: libFuzzer|SUMMARY' "$log"; then
        echo "$h: FAILED after ${execs:-?} executions; see $log and build/artifacts/$h-*"
        status=1
    else
        echo "$h: ok, ${execs:-?} executions"
    fi
done
exit $status
