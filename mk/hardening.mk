# mk/hardening.mk — the checks that tfm survives bad input and is free of memory errors:
#
#   make sanitize            build everything (library, tfm, every Check suite) with AddressSanitizer
#                            and UndefinedBehaviorSanitizer into $(BUILD)/sanitize; run every suite
#                            and `tfm check` there; any report fails the target
#   make valgrind            every suite and `tfm check` under valgrind memcheck ($(BUILD)/valgrind):
#                            any error or definite leak fails the target (VG_SKIP: what it leaves out)
#   make fuzz FUZZ_SECONDS=N build the libFuzzer targets tests/fuzz/*.c with clang (ASan + UBSan)
#                            into $(BUILD)/fuzz and run each for N seconds from its seed corpus
#   make lint                gcc and clang builds with -Werror, then cppcheck
#   make test-clang          every suite and `tfm check`, built by clang ($(BUILD)/clang)
#
# Each one re-invokes make with its own BUILD, so the sanitized, valgrind and fuzzing objects
# never mix with the ordinary build/ (or with each other), and every suite in tests/test_*.c
# and every fuzzer in tests/fuzz/*.c is picked up by wildcard: a new chapter needs no edit here.

.PHONY: sanitize valgrind fuzz lint fuzzers test-clang

# The instrumented builds put their flags into CC itself ("gcc -fsanitize=..."): then every
# compile and every link line uses them, including link rules that other mk/*.mk files give
# their own LDLIBS (bench.mk links tfm with OpenBLAS), and nothing in the Makefile has to change.

# Check forks a child per test by default. Under valgrind the child is what must be watched
# (and forked children escape it), and a sanitizer report is simplest to read from one process,
# so the suites run in-process. Without fork Check enforces no timeouts, which also suits the
# slow-down of both tools.
HARDEN_ENV := CK_FORK=no TFM_ROOT=$(CURDIR)
SUITES      = $(TEST_SRC:tests/%.c=$(1)/tests/%)

# ---- sanitize --------------------------------------------------------------------------
# -fno-sanitize-recover=all: undefined behaviour aborts the run instead of printing and going
# on, so a report cannot scroll past unnoticed. -g and frame pointers make the reports readable.
SAN_DIR   := $(BUILD)/sanitize
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g
# detect_leaks: LeakSanitizer runs at exit of every process (on by default on x86-64 Linux;
# said here so it stays on elsewhere); a leak makes the exit status non-zero like any report.
SAN_ENV   := ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
             UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

sanitize: deps
	@$(MAKE) --no-print-directory BUILD=$(SAN_DIR) CC="$(CC) $(SAN_FLAGS)" all
	@fail=0; for t in $(call SUITES,$(SAN_DIR)); do echo "== sanitize $$t"; \
	   $(HARDEN_ENV) $(SAN_ENV) $$t || { echo "!! $$t FAILED under ASan/UBSan"; fail=1; }; done; \
	 echo "== sanitize tfm check"; \
	 $(HARDEN_ENV) $(SAN_ENV) $(SAN_DIR)/bin/tfm check >$(SAN_DIR)/check.txt || \
	   { grep -E 'FAIL|ERROR' $(SAN_DIR)/check.txt | head -n 20; echo "!! tfm check FAILED under ASan/UBSan"; fail=1; }; \
	 tail -n 1 $(SAN_DIR)/check.txt; \
	 if [ $$fail -ne 0 ]; then echo "make sanitize: FAILED"; exit 1; fi; echo "make sanitize: clean"

# ---- valgrind --------------------------------------------------------------------------
# A separate build without -march=native: valgrind 3.19 cannot decode AVX-512 instructions,
# which -march=native emits on machines that have them (the fast files then take their
# portable paths; the memory they touch is the same). -g for line numbers in the reports.
VG_DIR   := $(BUILD)/valgrind
VG_OPT   := -O2 -g
VG_FAST  := -O3 -g -ffp-contract=fast -fno-trapping-math -fno-tree-loop-distribute-patterns
# Errors (invalid reads/writes, uninitialised values, bad frees), definite leaks and blocks
# still reachable at exit fail the run: a kernel a model calls a million times must leave
# nothing behind (the fast kernels' scratch arena frees itself at exit). libgomp's own thread
# pool is alive at exit and keeps its blocks: tests/valgrind.supp explains its suppressions. To see where an uninitialised value came
# from, add VALGRIND_EXTRA=--track-origins=yes (it doubles the run time, so CI does without).
VALGRIND_EXTRA ?=
VALGRIND := valgrind --quiet --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,reachable --show-leak-kinds=definite,possible,reachable \
            --suppressions=$(CURDIR)/tests/valgrind.supp $(VALGRIND_EXTRA)

# Three things are left to the other runs, because valgrind's 50-fold slow-down would make them
# most of CI's time and they reach no code the rest does not. The suites' golden walks (the
# TCases tagged "goldens": each chapter's naive and fast walk, test_ops' naive one): `tfm check`
# below walks every case in both variants under valgrind, once. test_determinism, which runs
# every golden case five more times (naive twice, fast on 1, 2 and 3 threads) to compare bits.
# And the TCases tagged "corpus", which process the whole Austen corpus (test_09: the small
# corpora's tests take the same paths). ASan + UBSan (make sanitize) runs all three.
VG_SKIP  := test_determinism
VG_ENV   := CK_EXCLUDE_TAGS="goldens corpus"

valgrind: deps
	@$(MAKE) --no-print-directory BUILD=$(VG_DIR) OPT="$(VG_OPT)" FAST_CFLAGS="$(VG_FAST)" all
	@fail=0; for t in $(filter-out $(addprefix $(VG_DIR)/tests/,$(VG_SKIP)),$(call SUITES,$(VG_DIR))); do \
	   echo "== valgrind $$t"; \
	   $(HARDEN_ENV) $(VG_ENV) $(VALGRIND) $$t || { echo "!! $$t FAILED under valgrind"; fail=1; }; done; \
	 echo "== valgrind tfm check"; \
	 $(HARDEN_ENV) $(VALGRIND) $(VG_DIR)/bin/tfm check >$(VG_DIR)/check.txt || \
	   { grep -E 'FAIL|ERROR' $(VG_DIR)/check.txt | head -n 20; echo "!! tfm check FAILED under valgrind"; fail=1; }; \
	 tail -n 1 $(VG_DIR)/check.txt; \
	 if [ $$fail -ne 0 ]; then echo "make valgrind: FAILED"; exit 1; fi; echo "make valgrind: clean"

# ---- fuzz ------------------------------------------------------------------------------
# The library is compiled with coverage instrumentation (fuzzer-no-link) and both sanitizers;
# only the fuzzer binaries link libFuzzer's main. clang's -fopenmp uses LLVM's libomp.
FUZZ_SECONDS ?= 30
FUZZ_DIR   := $(BUILD)/fuzz
FUZZ_CC    := clang
# -Wno-pass-failed: the sanitizers' instrumentation keeps clang from vectorizing the `omp simd`
# loops, and clang says so for each; in this build that is expected (lint builds without it).
FUZZ_FLAGS := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g \
              -Wno-pass-failed
FUZZ_LINK  := -fsanitize=fuzzer,address,undefined
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/*.c))
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/%.c=%)
# -timeout: one input taking longer is a hang and a failure. -rss_limit_mb: the runners' size
# guard (cases.h) keeps each input far below it. -max_len: 32 KiB, above every seed (<= 20 KB).
# The dictionary (header keys, dtypes, tensor names) is written by tests/fuzz/make_corpus.py; a
# target with its own, tests/fuzz/<target>.dict (the tokenizer's), uses that one instead.
FUZZ_OPTS  := -timeout=25 -rss_limit_mb=2048 -max_len=32768 -print_final_stats=1

# Linked inside the re-invoked make (BUILD=$(FUZZ_DIR)), where $(LIB) is the instrumented one.
fuzzers: $(FUZZ_NAMES:%=$(BUILD)/fuzzers/%)
.SECONDARY: $(FUZZ_SRC:%.c=$(BUILD)/obj/%.o)
$(BUILD)/fuzzers/%: $(BUILD)/obj/tests/fuzz/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(FUZZ_LINK) $^ -o $@ $(LDLIBS)

# libFuzzer adds what it discovers to the first corpus directory: that is a scratch copy under
# $(FUZZ_DIR), so the committed seeds in tests/fuzz/corpus/<target>/ stay as they are. A crash,
# leak, hang or sanitizer report stops the target with a non-zero exit and leaves the input in
# $(FUZZ_DIR)/crashes/ (add it to the corpus, fix the bug, add a Check test).
fuzz: deps
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_DIR) CC="$(FUZZ_CC) $(FUZZ_FLAGS)" fuzzers
	@fail=0; for f in $(FUZZ_NAMES); do \
	   echo "== fuzz $$f for $(FUZZ_SECONDS) s"; \
	   mkdir -p $(FUZZ_DIR)/corpus/$$f $(FUZZ_DIR)/crashes; \
	   dict=tests/fuzz/$$f.dict; [ -f $$dict ] || dict=tests/fuzz/safetensors.dict; \
	   TFM_ROOT=$(CURDIR) $(FUZZ_DIR)/fuzzers/$$f $(FUZZ_OPTS) -dict=$$dict -max_total_time=$(FUZZ_SECONDS) \
	     -artifact_prefix=$(FUZZ_DIR)/crashes/$$f- $(FUZZ_DIR)/corpus/$$f tests/fuzz/corpus/$$f \
	     >$(FUZZ_DIR)/$$f.log 2>&1 || { tail -n 60 $(FUZZ_DIR)/$$f.log; echo "!! fuzz $$f FAILED"; fail=1; }; \
	   grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)' $(FUZZ_DIR)/$$f.log || true; \
	 done; \
	 if [ $$fail -ne 0 ]; then echo "make fuzz: FAILED (inputs in $(FUZZ_DIR)/crashes/)"; exit 1; fi; \
	 echo "make fuzz: clean"

# ---- test-clang ------------------------------------------------------------------------
# Every suite and `tfm check` built by clang instead of gcc: another compiler's vectorizer,
# FMA contraction and OpenMP runtime (libomp) must give the same answers, to the same
# tolerances. The build is the one `make lint` checks for warnings.
CLANG_DIR  := $(BUILD)/clang
CLANG_MAKE := BUILD=$(CLANG_DIR) CC=clang CFLAGS="-Werror -Wno-pass-failed"

test-clang: deps
	@$(MAKE) --no-print-directory $(CLANG_MAKE) all
	@fail=0; for t in $(call SUITES,$(CLANG_DIR)); do echo "== clang $$t"; \
	   TFM_ROOT=$(CURDIR) $$t || { echo "!! $$t FAILED built by clang"; fail=1; }; done; \
	 echo "== clang tfm check"; \
	 TFM_ROOT=$(CURDIR) $(CLANG_DIR)/bin/tfm check >$(CLANG_DIR)/check.txt || \
	   { grep -E 'FAIL|ERROR' $(CLANG_DIR)/check.txt | head -n 20; echo "!! tfm check FAILED built by clang"; fail=1; }; \
	 tail -n 1 $(CLANG_DIR)/check.txt; \
	 if [ $$fail -ne 0 ]; then echo "make test-clang: FAILED"; exit 1; fi; echo "make test-clang: clean"

# ---- lint ------------------------------------------------------------------------------
# The Makefile's warnings (-Wall -Wextra -Wpedantic -Wshadow -Wconversion; -Wno-sign-conversion
# because size_t indices meet int loop bounds all over the kernels) as errors, with gcc and with
# clang, the fuzzers included; then cppcheck over every C file.
# One clang warning is off, -Wpass-failed: it reports an `omp simd` loop that clang's vectorizer
# declined (clang 14 does not vectorize a select-based max reduction such as attention_fast.c's
# row_max). That is a missed optimization of one compiler, not a defect in the code; whether
# the results are right under clang is what `make test-clang` checks.
# cppcheck suppressions, each for a reason (file-scoped ones name the file):
#   missingIncludeSystem  it is not given the system headers; the compilers check those includes.
#   danglingTempReference, danglingTemporaryLifetime  C++ checks (references to temporaries)
#       that cppcheck 2.10 misapplies to C: it flags `tensor_i64(&t)[0] = -5`, a store through
#       the pointer an inline accessor returns, as a reference to a dead temporary. C has no
#       references; the pointed-to tensor data lives on.
#   invalidFunctionArg in chapter 05 and its test: log(0) is -inf under IEEE 754 (C11 Annex F),
#       and the cross-entropy code relies on it (an all -inf row of logits sums to 0, its log is
#       -inf, the loss NaN, as in PyTorch); cppcheck takes log's domain to be (0, inf).
#   uninitvar in tests/test_03_positional.c: `EmbBadId bad` is an output argument the kernel
#       fills; cppcheck cannot see through the function pointer `v ? ..._fast : ..._naive`.
# --inline-suppr lets a future suppression sit, explained, on its own line instead.
CPPCHECK_SUPPRESS := missingIncludeSystem danglingTempReference danglingTemporaryLifetime \
                     invalidFunctionArg:chapters/05-pretraining/pretraining_naive.c \
                     invalidFunctionArg:chapters/05-pretraining/pretraining_fast.c \
                     invalidFunctionArg:tests/test_05_pretraining.c \
                     uninitvar:tests/test_03_positional.c
CPPCHECK := cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
            --inline-suppr $(addprefix --suppress=,$(CPPCHECK_SUPPRESS)) -D_POSIX_C_SOURCE=200809L \
            $(INCLUDES) -Itests -Ibench --template='{file}:{line}: {severity} ({id}): {message}'

lint: deps
	@echo "== lint: gcc -Werror"
	@$(MAKE) --no-print-directory BUILD=$(BUILD)/lint-gcc CC=gcc CFLAGS=-Werror all $(FUZZ_SRC:%.c=$(BUILD)/lint-gcc/obj/%.o)
	@echo "== lint: clang -Werror"
	@$(MAKE) --no-print-directory $(CLANG_MAKE) all $(FUZZ_SRC:%.c=$(CLANG_DIR)/obj/%.o)
	@echo "== lint: cppcheck"
	@$(CPPCHECK) $(LIB_SRC) $(wildcard src/*.c bench/*.c) $(TEST_SRC) tests/testutil.c $(FUZZ_SRC)
	@echo "make lint: clean"
