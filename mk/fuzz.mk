# fuzz.mk - the fuzz harnesses of the readers of outside data (tests/fuzz/fuzz_NAME.c;
# docs/building.md, "Fuzzing"; included by build.mk).
#
#   make fuzz          builds each harness with clang and libFuzzer, ASan and UBSan into
#                      $(BUILD)/fuzz/fuzz_NAME and runs it FUZZ_SECONDS (default 60) from its
#                      seeds (tests/fuzz/run.sh); crashes go to $(BUILD)/fuzz/crashes/NAME/
#                      and fail the target when they are in our code (inside libhdf5: listed)
#   make fuzz-replay   runs every seed and every crash reproducer once through the harnesses
#                      built with gcc and ASan + UBSan (tests/fuzz/replay.c: no clang needed)
#   make asan-readers  that, and the readers' unit tests in the same build (.ci/run)
# ONLY="config ckpt" picks harnesses. clang comes from `scripts/install_deps.sh --fuzz`, which
# `make fuzz` runs first (clang is needed by no other target).

FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_PICKED := $(if $(ONLY),$(filter $(ONLY),$(FUZZ_NAMES)),$(FUZZ_NAMES))
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_DIR := $(BUILD)/fuzz
# the readers' code: the library and the command line's option parser
FUZZ_LIB_SRC := $(LIB_SRC) src/cli/args.c
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
# No -fopenmp: the library runs serially (tests/fuzz/omp/omp.h says why); its omp_* calls
# link to libgomp (and a variable read only by a pragma is unused).
FUZZ_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -O1 -g -fno-omit-frame-pointer $(WARN) -MMD -MP \
               -Wno-unused-variable \
               -Itests/fuzz/omp -Isrc $(PKG_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(FUZZ_LIB_SRC))
FUZZ_BINS := $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_PICKED))
CKPT_SEEDS := $(FUZZ_DIR)/seeds/ckpt

.PHONY: fuzz fuzz-build fuzz-replay fuzz-replay-run asan-readers asan-readers-run

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_DIR)/libksa.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/obj/tests/fuzz/fuzz_%.o $(FUZZ_DIR)/obj/tests/fuzz/fuzzutil.o \
                    $(FUZZ_DIR)/libksa.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer $^ -o $@ $(PKG_LIBS) -lgomp -lm

# The checkpoint harness's seeds: files the program writes (~90 KB for a training one, so
# made here rather than committed).
$(CKPT_SEEDS)/.done: $(BIN)/ksa tests/fuzz/make_ckpt_seeds.sh tests/fuzz/ckpt_seed.conf
	tests/fuzz/make_ckpt_seeds.sh $(BIN)/ksa $(CKPT_SEEDS) && touch $@

fuzz:
	scripts/install_deps.sh --fuzz
	$(MAKE) fuzz-build
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_PICKED)
fuzz-build: $(FUZZ_BINS) $(CKPT_SEEDS)/.done

# The same harnesses with gcc's ASan + UBSan, linked with replay.c: each seed and each
# reproducer once, in a build of their own, build/asan-readers: with gcc's
# float-cast-overflow check as well, which its -fsanitize=undefined leaves out (clang's has
# it, and the fuzzing found such a conversion). The checkpoint seeds come from the normal
# build's $(BIN)/ksa.
REPLAY_ARGS = BUILD=build/asan-readers BIN=build/asan-readers/bin SAN=1 \
              SAN_EXTRA=,float-cast-overflow FUZZ_SEEDS=$(abspath $(FUZZ_DIR)/seeds)
FUZZ_REPLAY_BINS := $(patsubst %,$(BUILD)/fuzz-replay/fuzz_%,$(FUZZ_PICKED))
$(BUILD)/fuzz-replay/fuzz_%: $(BUILD)/f32/tests/fuzz/fuzz_%.o $(BUILD)/f32/tests/fuzz/fuzzutil.o \
                             $(BUILD)/f32/tests/fuzz/replay.o $(LIB32) $(BUILD)/f32/src/cli/args.o
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LDLIBS)
fuzz-replay: $(CKPT_SEEDS)/.done
	$(MAKE) $(REPLAY_ARGS) fuzz-replay-run
fuzz-replay-run: $(FUZZ_REPLAY_BINS)
	tests/fuzz/replay.sh $(BUILD)/fuzz-replay $(FUZZ_SEEDS) $(FUZZ_PICKED)

# CI's sanitizer step: the replay above, then the unit tests of the readers, float32, in the
# same build (`make asan` runs every test in both precisions). ASAN_OPTIONS as `make asan`
# sets it: Open MPI leaks at exit.
READER_TESTS ?= core config tokfile mixture loader ckpt ckpt_info bpe
READER_TEST_BINS = $(patsubst %,$(BUILD)/tests/f32/test_%,$(READER_TESTS))
asan-readers: $(CKPT_SEEDS)/.done
	$(MAKE) $(REPLAY_ARGS) asan-readers-run
asan-readers-run: fuzz-replay-run $(READER_TEST_BINS)
	ASAN_OPTIONS=detect_leaks=0 BUILD=$(BUILD) BIN=$(BIN) PY=$(PY) \
	    bash tests/run_tests.sh $(READER_TEST_BINS)
