# The Python for the tests (numpy and sentencepiece; torch for train/, skipped without it): PYTHON if
# given, else the first of python3 and /usr/bin/python3 that has numpy and sentencepiece, looked for
# once, when a recipe first needs it.
ifeq ($(origin PYTHON),undefined)
PYTHON = $(eval PYTHON := $(firstword $(foreach p,python3 /usr/bin/python3,$(shell $(p) -c \
	'import numpy, sentencepiece' > /dev/null 2>&1 && echo $(p)))))$(PYTHON)
endif
CFLAGS ?= -O3 -march=native
THREADS ?= $(shell nproc)
WARN = -Wall -Wextra
SAN = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
# razor's vector width and tiles follow the compile target (model.h). The C tests run for the
# machine's own ISA and again for each narrower x86 target it can execute, so that no kernel width
# goes untested on whichever machine runs them: AVX2 (x86-64-v3) where the CPU has it, and SSE2
# (x86-64, every x86-64 CPU).
ifeq ($(shell uname -m),x86_64)
NARROW_ISAS := $(shell grep -qw avx512f /proc/cpuinfo && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo \
	&& grep -qw bmi2 /proc/cpuinfo && grep -qw movbe /proc/cpuinfo && grep -qw f16c /proc/cpuinfo && echo x86-64-v3) x86-64
endif

razor: razor.c model.h
	$(CC) $(CFLAGS) $(WARN) -o $@ razor.c -lm -lpthread

# the same program without pthreads: libc + libm only
razor-nothreads: razor.c model.h
	$(CC) $(CFLAGS) $(WARN) -DRAZOR_NO_THREADS -o $@ razor.c -lm

# the tests and a razor for the command-line tests, both under AddressSanitizer + UBSan
razor-san: razor.c model.h
	$(CC) $(SAN) -march=native $(WARN) -o $@ razor.c -lm -lpthread
test_razor: test_razor.c razor.c model.h tests/tokenizer_vectors.h tests/bbpe_vectors.h
	$(CC) $(SAN) -march=native $(WARN) -DRAZOR_NO_MAIN -o $@ test_razor.c -lm -lpthread
# the same three for another target: make test_razor-x86-64-v3 razor-san-x86-64-v3 razor-nothreads-x86-64-v3
razor-san-%: razor.c model.h
	$(CC) $(SAN) -march=$* $(WARN) -o $@ razor.c -lm -lpthread
razor-nothreads-%: razor.c model.h
	$(CC) -O3 -march=$* $(WARN) -DRAZOR_NO_THREADS -o $@ razor.c -lm
test_razor-%: test_razor.c razor.c model.h tests/tokenizer_vectors.h tests/bbpe_vectors.h
	$(CC) $(SAN) -march=$* $(WARN) -DRAZOR_NO_MAIN -o $@ test_razor.c -lm -lpthread

.PHONY: test bench clean valgrind fuzz fuzz-smoke test-aarch64 check-python
# first, in seconds: a Python the tests can use, or one line naming what to install
check-python:
	@if [ -z "$(PYTHON)" ] || ! $(PYTHON) -c 'import numpy, sentencepiece' > /dev/null 2>&1; then \
	    echo "make test: no Python with numpy and sentencepiece ($(or $(PYTHON),tried python3 and /usr/bin/python3)):" \
	        "apt-get install python3-numpy python3-sentencepiece (Debian), or make test PYTHON=/path/to/python3"; \
	    exit 1; fi; echo "make test: the Python tests run with $(PYTHON)"
NARROW_BUILDS = $(foreach i,$(NARROW_ISAS),test_razor-$(i) razor-san-$(i) razor-nothreads-$(i))
test: check-python razor razor-san razor-nothreads test_razor $(NARROW_BUILDS)
	$(PYTHON) tests/check_readme_lines.py README.md razor.c
	./test_razor ./razor-san ./razor-nothreads
	@for i in $(NARROW_ISAS); do echo "== the C tests again, built for -march=$$i"; \
	    ./test_razor-$$i ./razor-san-$$i ./razor-nothreads-$$i > test_razor-$$i.log 2>&1 \
	    || { cat test_razor-$$i.log; exit 1; }; tail -1 test_razor-$$i.log; rm -f test_razor-$$i.log; done
	$(MAKE) -s valgrind fuzz-smoke test-aarch64
	$(PYTHON) tests/test_tokenizer_bbpe.py
	$(PYTHON) train/test_train.py
	RAZOR=./razor $(PYTHON) tests/test_export.py
	RAZOR=./razor $(PYTHON) tests/test_gguf.py

# valgrind on a short generation with bf16 weights and on the razor cache path (profiling,
# compression, the compensation token, the sliding window): no errors, no leaks
razor-vg: razor.c model.h  # no -march=native: valgrind does not run AVX-512
	$(CC) -O1 -g $(WARN) -o $@ razor.c -lm -lpthread
valgrind: razor-vg test_razor
	@if ! command -v valgrind >/dev/null; then echo "valgrind: SKIPPED (not installed)"; exit 0; fi; \
	d=$$(mktemp -d) && ./test_razor --random-model $$d/m.bin 64 128 2 4 2 512 256 && \
	VG="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite" && \
	{ $$VG ./razor-vg $$d/m.bin -z tests/sp512/tokenizer.bin -t 0 -n 20 -i "It is" -c full -w bf16 -T 2 > /dev/null 2> $$d/log || { cat $$d/log; exit 1; }; } && \
	{ $$VG ./razor-vg $$d/m.bin -z tests/sp512/tokenizer.bin -t 0.8 -n 40 -i "$$(head -c 500 tests/bench_prompt.txt)" -c razor -W 8 -S 2 -T 2 \
	  > /dev/null 2> $$d/log || { cat $$d/log; exit 1; }; } && \
	for p in snapkv h2o; do $$VG ./razor-vg $$d/m.bin -z tests/sp512/tokenizer.bin -t 0 -n 30 -i "$$(head -c 300 tests/bench_prompt.txt)" \
	  -c $$p -W 8 -S 2 -T 2 > /dev/null 2> $$d/log || { cat $$d/log; exit 1; }; done && \
	rm -rf $$d && echo "valgrind: 0 errors, no leaks (a generation with bf16 weights; the razor cache: profiling, compression," \
	  "sliding window; snapkv and h2o)"

# the C tests for 64-bit ARM (NEON vectors of 4, 32 registers) with the dotprod extension (int8 dot
# products by sdot; qemu's default CPU has it), cross-compiled and run under qemu-user (no sanitizers
# there); plain armv8-a (no sdot: dot_i8_plain, which the tests check in every build) is compiled, with
# warnings as errors. Needs Debian's gcc-aarch64-linux-gnu and qemu-user, else skipped
AARCH64_CC = aarch64-linux-gnu-gcc
AARCH64_ARCH = -march=armv8.2-a+dotprod
test-aarch64:
	@if ! command -v $(AARCH64_CC) >/dev/null || ! command -v qemu-aarch64 >/dev/null; then \
	    echo "aarch64: SKIPPED ($(AARCH64_CC) or qemu-aarch64 not installed)"; exit 0; fi; \
	d=$$(mktemp -d) && \
	$(AARCH64_CC) -O2 $(WARN) -Werror -o $$d/razor-armv8 razor.c -lm -lpthread && \
	$(AARCH64_CC) -O2 $(AARCH64_ARCH) $(WARN) -o $$d/razor razor.c -lm -lpthread && \
	$(AARCH64_CC) -O2 $(AARCH64_ARCH) $(WARN) -DRAZOR_NO_THREADS -o $$d/razor-nothreads razor.c -lm && \
	$(AARCH64_CC) -O2 $(AARCH64_ARCH) $(WARN) -DRAZOR_NO_MAIN -o $$d/test_razor test_razor.c -lm -lpthread && \
	export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu && \
	{ qemu-aarch64 $$d/test_razor "qemu-aarch64 $$d/razor" "qemu-aarch64 $$d/razor-nothreads" > $$d/log 2>&1 \
	  || { cat $$d/log; rm -rf $$d; exit 1; }; } && \
	echo "aarch64 (qemu-user, $$(qemu-aarch64 $$d/razor -h | tail -1)): $$(tail -1 $$d/log)" && rm -rf $$d

# the libFuzzer harnesses (fuzz/; needs clang and libclang-rt): FUZZ_SECONDS each
FUZZ_SECONDS ?= 600
fuzz:
	$(MAKE) -s -C fuzz && sh fuzz/run.sh -t $(FUZZ_SECONDS)

# 10 seconds of each harness, for make test
fuzz-smoke:
	@if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' | clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null; \
	then echo "fuzz smoke: SKIPPED (clang with libFuzzer not installed)"; exit 0; fi; \
	$(MAKE) -s -C fuzz && sh fuzz/run.sh -t 10

clean:
	rm -f razor razor-nothreads razor-san razor-vg test_razor razor-san-* razor-nothreads-* test_razor-*

# Speed on fixed configurations: see tests/bench.sh
bench: razor test_razor
	THREADS=$(THREADS) PYTHON=$(PYTHON) sh tests/bench.sh
