PYTHON ?= python3
CFLAGS ?= -O3 -march=native
THREADS ?= $(shell nproc)
WARN = -Wall -Wextra -Wno-unused-parameter
SAN = -O1 -g -march=native -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

razor: razor.c model.h
	$(CC) $(CFLAGS) $(WARN) -o $@ razor.c -lm -lpthread

# the same program without pthreads: libc + libm only
razor-nothreads: razor.c model.h
	$(CC) $(CFLAGS) $(WARN) -DRAZOR_NO_THREADS -o $@ razor.c -lm

# the tests and a razor for the command-line tests, both under AddressSanitizer + UBSan
razor-san: razor.c model.h
	$(CC) $(SAN) $(WARN) -o $@ razor.c -lm -lpthread
test_razor: test_razor.c razor.c model.h tests/tokenizer_vectors.h
	$(CC) $(SAN) $(WARN) -Wno-unused-function -DRAZOR_NO_MAIN -o $@ test_razor.c razor.c -lm -lpthread

.PHONY: test bench clean valgrind fuzz fuzz-smoke
test: razor razor-san razor-nothreads test_razor
	./test_razor ./razor-san ./razor-nothreads
	$(MAKE) -s valgrind fuzz-smoke
	$(PYTHON) tests/test_tokenizer_bbpe.py
	$(PYTHON) train/test_train.py
	RAZOR=./razor $(PYTHON) tests/test_export.py

# valgrind on a short generation with bf16 weights and on the razor cache path (profiling,
# compression, the compensation token, the sliding window): no errors, no leaks
razor-vg: razor.c model.h  # no -march=native: valgrind does not run AVX-512
	$(CC) -O1 -g $(WARN) -Wno-psabi -o $@ razor.c -lm -lpthread
valgrind: razor-vg test_razor
	@if ! command -v valgrind >/dev/null; then echo "valgrind: SKIPPED (not installed)"; exit 0; fi; \
	d=$$(mktemp -d) && ./test_razor --random-model $$d/m.bin 64 128 2 4 2 512 256 && \
	VG="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite" && \
	{ $$VG ./razor-vg $$d/m.bin -z tokenizer.bin -t 0 -n 20 -i "It is" -c full -w bf16 -T 2 > /dev/null 2> $$d/log || { cat $$d/log; exit 1; }; } && \
	{ $$VG ./razor-vg $$d/m.bin -z tokenizer.bin -t 0.8 -n 40 -i "$$(head -c 500 tests/bench_prompt.txt)" -c razor -W 8 -S 2 -T 2 \
	  > /dev/null 2> $$d/log || { cat $$d/log; exit 1; }; } && \
	rm -rf $$d && echo "valgrind: 0 errors, no leaks (a generation with bf16 weights; the razor cache: profiling, compression, sliding window)"

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
	rm -f razor razor-nothreads razor-san razor-vg test_razor

# Speed on fixed configurations: see tests/bench.sh
bench: razor test_razor
	THREADS=$(THREADS) sh tests/bench.sh
