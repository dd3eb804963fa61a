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

.PHONY: test bench clean
test: razor razor-san razor-nothreads test_razor
	./test_razor ./razor-san ./razor-nothreads
	$(PYTHON) tests/test_tokenizer_bbpe.py
	$(PYTHON) train/test_train.py
	RAZOR=./razor $(PYTHON) tests/test_export.py

clean:
	rm -f razor razor-nothreads razor-san test_razor

# Speed on fixed configurations: see tests/bench.sh
bench: razor test_razor
	THREADS=$(THREADS) sh tests/bench.sh
