# tfm — the only build entry point. Everything is built out of tree, under build/.
#
#   make tour            install what is missing, build, check every chapter against the goldens,
#                        print the oracle table, render the figures into build/figures/
#   make test            install what is missing, build, run every Check suite (non-zero on failure)
#   make test-chNN       one chapter's suite (test-ch00, test-ch01, ...); make test-oracle: the reader
#   make oracle          regenerate oracle/golden/ with PyTorch (Debian's python3-torch), and
#                        oracle/peers/ with tokenizers.js (chapter 08)
#   make oracle-verify   regenerate into a temporary folder and compare with the committed goldens
#   make notebooks       execute every notebook headless; fails on any error
#   make pretrain        chapter 09's default recipe: the tiny BERT pretrained on Jane Austen
#                        (build/pretrain/tiny, about 20 minutes on 2 cores), then `tfm evaluate`
#   make deps            install the Debian packages tfm needs (as root or through sudo)
#   make clean

BUILD    ?= build
CC       ?= gcc
# -std=c11 (not gnu11) also means -ffp-contract=off: the naive files compute exactly the
# operations they spell out. The fast files add contraction into FMA (FAST_CFLAGS); neither
# ever uses -ffast-math, which would let the compiler reorder sums and drop NaN/inf semantics.
# The fast files also say -fno-trapping-math: nothing in tfm reads the floating-point exception
# flags or enables traps, and without that promise gcc will not evaluate both sides of a select
# whose operands could raise a flag, so a loop over tfm_expf (whose clamps are selects) stays
# scalar. It changes no value: every operation still gives its IEEE result, NaN and inf included.
# And -fno-tree-loop-distribute-patterns: gcc would otherwise turn a loop that zeroes or copies a
# small array of accumulators into a call to memset or memcpy, a function call per tile where
# a few vector stores would do; in attention's register tiles those calls cost about 5% of the
# time. (That flag is
# gcc's; clang neither has nor needs it.) And -mprefer-vector-width=512 where the compiler knows
# it (x86): on CPUs with AVX-512, gcc otherwise vectorizes plain loops 8 floats wide, half of
# what the FMA ceiling of `make bench` is measured with; attention's backward at T = 512 took
# 21 ms instead of 17 on a Xeon. Without AVX-512 it changes nothing.
CSTD     := -std=c11 -D_POSIX_C_SOURCE=200809L
WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion
OPT      ?= -O2 -march=native
CFLAGS   ?=
VEC512   := $(shell $(CC) -mprefer-vector-width=512 -E -x c /dev/null >/dev/null 2>&1 && \
                echo -mprefer-vector-width=512)
FAST_CFLAGS := -O3 -march=native $(VEC512) -ffp-contract=fast -fno-trapping-math \
               $(if $(findstring clang,$(CC)),,-fno-tree-loop-distribute-patterns)
CHAPTERS := $(sort $(wildcard chapters/*))
INCLUDES := $(addprefix -I,$(CHAPTERS)) -Ioracle
ALL_CFLAGS = $(CSTD) $(WARN) $(OPT) -fopenmp $(INCLUDES) $(CFLAGS)
LDLIBS   := -lcjson -lz -lutf8proc -lm -fopenmp
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -lpthread)

LIB_SRC  := $(wildcard chapters/*/*.c) $(wildcard oracle/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libtfm.a
TFM      := $(BUILD)/bin/tfm
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
PYTHON    = $(shell tools/find-torch-python)
# Where make deps puts the vocabulary, the corpora and the npm peers' data (tools/install-data):
# under the top-level build, also for the instrumented builds that re-invoke make with their own
# BUILD (they inherit this from the environment), and for every program those builds run.
TFM_DATA ?= $(abspath $(BUILD))/data
export TFM_DATA

.PHONY: all deps tour test test-oracle oracle oracle-verify notebooks figures book-figures figures-check clean pretrain
all: $(TFM) $(TEST_BIN)

deps:
	@tools/install-deps
	@tools/install-data $(BUILD)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(if $(findstring _fast.c,$<),$(FAST_CFLAGS)) -MMD -MP -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

TFM_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard src/*.c))
$(TFM): $(TFM_OBJ) $(LIB)
	@mkdir -p $(@D)
	$(CC) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/obj/tests/testutil.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $^ -o $@ $(CHECK_LIBS) $(LDLIBS)

# Every suite runs even if an earlier one fails; the target fails if any did.
test: deps
	@$(MAKE) --no-print-directory all
	@fail=0; for t in $(TEST_BIN); do echo "== $$t"; TFM_ROOT=$(CURDIR) $$t || fail=1; done; \
	 if [ $$fail -ne 0 ]; then echo "make test: a suite FAILED"; exit 1; fi

# test-ch01 -> build/tests/test_01_*: the chapter's suite, found from tests/test_01_*.c.
.SECONDEXPANSION:
test-ch%: deps $$(subst tests/,$(BUILD)/tests/,$$(basename $$(wildcard tests/test_$$*_*.c)))
	@[ -n "$(filter-out deps,$^)" ] || { echo "no suite tests/test_$*_*.c"; exit 2; }
	@for t in $(filter-out deps,$^); do TFM_ROOT=$(CURDIR) $$t || exit 1; done
test-oracle: $(BUILD)/tests/test_oracle
	@TFM_ROOT=$(CURDIR) $<

# Chapter 09's default recipe (book.md, chapter 09): the tiny preset, 1,200 steps of 32 x 128
# tokens (4.9 M tokens, four and a half passes over the 8,800 training instances), AdamW at
# 5e-4 with 120 steps of warm-up, a checkpoint every 200 steps; then the held-out evaluation.
# A killed run continues with PRETRAIN_RESUME=build/pretrain/tiny/checkpoint-K.
PRETRAIN_DIR   ?= $(BUILD)/pretrain/tiny
PRETRAIN_STEPS ?= 1200
PRETRAIN_ARGS  ?= --config tiny --steps $(PRETRAIN_STEPS) --batch-size 32 --lr 5e-4 --warmup 120 \
                  --save-every 200
pretrain: deps $(TFM)
	@mkdir -p $(PRETRAIN_DIR)
	$(TFM) pretrain $(if $(PRETRAIN_RESUME),--steps $(PRETRAIN_STEPS) --resume $(PRETRAIN_RESUME),$(PRETRAIN_ARGS)) \
	  --out $(PRETRAIN_DIR) --log $(PRETRAIN_DIR)/log.jsonl
	$(TFM) evaluate --model $(PRETRAIN_DIR) | tee $(PRETRAIN_DIR)/evaluate.txt
	$(TFM) fill-mask --model $(PRETRAIN_DIR) "It is a truth universally [MASK]." \
	  "She was the [MASK] of the family." | tee $(PRETRAIN_DIR)/fill-mask.txt

tour: deps
	@$(MAKE) --no-print-directory all
	TFM_ROOT=$(CURDIR) $(TFM) check
	@$(MAKE) --no-print-directory figures

# Figures are drawn by gnuplot from data that tfm itself computed (never from PyTorch's).
# Each chapter adds its own to FIGURES, with the rules that make them, in plots/NN-name.mk.
# `make figures` draws PNGs into build/figures/; the book embeds the SVGs committed in figures/,
# which `make book-figures` redraws and `make figures-check` compares with a fresh drawing.
FIG    := $(BUILD)/figures
FIGEXT ?= png
FIGURES :=
include $(wildcard plots/*.mk)
figures: $(FIGURES)
	@echo "figures written to $(FIG)/"

book-figures:
	@$(MAKE) --no-print-directory figures FIGEXT=svg
	@mkdir -p figures && cp $(FIG)/*.svg figures/ && echo "book figures written to figures/"

figures-check:
	@rm -f $(FIG)/*.svg && $(MAKE) --no-print-directory figures FIGEXT=svg >/dev/null
	@fail=0; for f in $(FIG)/*.svg; do \
	   cmp -s "$$f" "figures/$$(basename $$f)" || { echo "figures/$$(basename $$f) is out of date: run make book-figures"; fail=1; }; \
	 done; for f in figures/*.svg; do [ -e "$(FIG)/$$(basename $$f)" ] || { echo "$$f is drawn by no rule"; fail=1; }; done; \
	 [ $$fail = 0 ] && echo "figures/ is current"

# The writer runs on one thread, so that regenerating commits as no change; the check leaves the
# thread counts (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS) to the environment, since it proves that
# PyTorch computes the same functions, however it rounds (oracle/verify.py).
# Chapter 08's goldens come from a peer, not from PyTorch: tokenizers.js under node
# (oracle/peers/export_08.mjs). Token ids are integers, so its check is equality, tensor by tensor
# (oracle/peers/compare.mjs); a machine without the articles (../shared/articles) skips theirs.
PEER_GOLDEN := oracle/peers/08-tokenizer.safetensors.gz
PEER_EXPORT  = TFM_ROOT=$(CURDIR) TFM_BUILD=$(BUILD) node oracle/peers/export_08.mjs

oracle: deps
	$(PYTHON) oracle/export.py --threads 1 --out oracle/golden
	$(PEER_EXPORT) $(PEER_GOLDEN)

oracle-verify: deps
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	 $(PYTHON) oracle/export.py --threads env --out "$$tmp" && \
	 $(PYTHON) oracle/verify.py "$$tmp" oracle/golden && \
	 $(PEER_EXPORT) --allow-missing-articles "$$tmp/peer.safetensors.gz" >/dev/null && \
	 node oracle/peers/compare.mjs "$$tmp/peer.safetensors.gz" $(PEER_GOLDEN)

# Notebooks are committed without outputs (reviewable diffs); this checks that, then executes
# each one headless into build/notebooks/, failing on the first error.
notebooks: all
	@$(PYTHON) -c 'import json,sys; bad=[p for p in sys.argv[1:] for c in json.load(open(p))["cells"] if c.get("outputs") or c.get("execution_count")]; sys.exit("notebooks committed with outputs: %s" % sorted(set(bad)) if bad else 0)' notebooks/*.ipynb
	@mkdir -p $(BUILD)/notebooks
	@for nb in notebooks/*.ipynb; do \
	   echo "== $$nb"; \
	   TFM_ROOT=$(CURDIR) PYDEVD_DISABLE_FILE_VALIDATION=1 jupyter nbconvert --to notebook --execute \
	     --output-dir $(BUILD)/notebooks --ExecutePreprocessor.timeout=600 "$$nb" || exit 1; done

clean:
	rm -rf $(BUILD)

# Further targets (sanitizers, fuzzing, benchmarks) live in mk/*.mk.
include $(wildcard mk/*.mk)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
