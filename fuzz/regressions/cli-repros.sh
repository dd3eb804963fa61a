#!/bin/sh
# Reproduces, through the command line, three bugs found while fuzzing (all fixed in 3fcd00c), with
# razor built under ASan + UBSan in a temporary directory. Fixed: each prints a clean one-line razor
# message or nothing; "ERROR: AddressSanitizer" or a garbled message means a bug is back.
set -u
cd "$(dirname "$0")/../.."
t=$(mktemp -d)
clang -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -o "$t/razor" razor.c -lm -lpthread 2>/dev/null || exit 1
# a tiny razor-format model: dim 16, hidden 16, 1 layer, 2 heads, 1 KV head, vocab 512, seq_len 64, all weights 0
/usr/bin/python3 -c "
import struct, sys
h = struct.pack('<I12i2fi3fi', 0x727a6172, 1, 16, 16, 1, 2, 1, 8, 512, 64, 1, 2, 1, 1e-5, 1e4, 0, 0, 0, 0, 0).ljust(256, b'\0')
n = 512*16 + 16 + 16*16 + 2*8*16 + 16*16 + 16 + 3*16*16 + 16
open(sys.argv[1], 'wb').write(h + bytes(4 * n))" "$t/zero.bin"
echo "1. double free after a rejected profile (load_profile frees, then main frees again):"
printf 'not a profile\n' > "$t/bad.heads"
"$t/razor" "$t/zero.bin" -z tests/sp512/tokenizer.bin -k "$t/bad.heads" -n 1 -i hi 2>&1 | grep -m2 -E 'razor:|ERROR'
echo "2. garbled message for a file that is neither format (expect the reason: hidden_dim = 0 ...):"
/usr/bin/python3 -c "import struct, sys; open(sys.argv[1], 'wb').write(struct.pack('<7i', 16, 0, 1, 2, 2, 16, 8) + bytes(64))" "$t/bad_v0.bin"
"$t/razor" "$t/bad_v0.bin" -i hi 2>&1 | head -1
echo "3. top-p with no candidate (flat distribution, p < 1/vocab): candidates[-1]:"
"$t/razor" "$t/zero.bin" -z tests/sp512/tokenizer.bin -c full -t 1 -p 0.001 -n 2 -i hi 2>&1 >/dev/null | grep -m2 -E 'ERROR|#0'
rm -rf "$t"
