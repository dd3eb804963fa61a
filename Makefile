PYTHON ?= python3
CFLAGS ?= -O3 -march=native
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

.PHONY: test bench clean
test: razor razor-san razor-nothreads test_razor
	./test_razor ./razor-san ./razor-nothreads
	RAZOR=./razor $(PYTHON) tests/test_export.py

clean:
	rm -f razor razor-nothreads razor-san test_razor

# Speed on a fixed configuration: a random model of llama2.c's stories15M shape (dim 288, 6 layers,
# 6 heads) with this repository's 512-piece vocabulary and a 2048-token context; a 1000-token prompt,
# 256 generated tokens, and a 100 KB prompt through the tokenizer.
BENCH_MODEL = /tmp/razor_bench_model.bin
bench: razor test_razor
	./test_razor --random-model $(BENCH_MODEL) 288 768 6 6 6 512 2048
	./razor $(BENCH_MODEL) -z tokenizer.bin -t 0 -n 256 -f tests/bench_prompt.txt > /dev/null
	./razor $(BENCH_MODEL) -z tokenizer.bin -t 0 -n 256 -i "It is a truth" > /dev/null
	for i in $$(seq 50); do cat tests/bench_prompt.txt; done > /tmp/razor_bench_100k.txt
	./razor $(BENCH_MODEL) -z tokenizer.bin -m tokenize -f /tmp/razor_bench_100k.txt > /dev/null
