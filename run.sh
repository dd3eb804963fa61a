#!/bin/sh
# Builds razor and lets the shipped model (model.bin, trained by train/) continue a prompt.
#     ./run.sh                     the default prompt
#     ./run.sh "Your prompt" ...   any razor options may follow the prompt
set -e
cd "$(dirname "$0")"
make -s razor
prompt=${1:-"It is a truth universally acknowledged"}
[ $# -gt 0 ] && shift
exec ./razor model.bin -z tokenizer.bin -t 0.8 -p 0.9 -n 300 -i "$prompt" "$@"
