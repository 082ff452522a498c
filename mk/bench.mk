# Benchmarks (bench/bench.h explains the method).
#
#   make bench           PyTorch (both configurations), then `tfm bench`: every chapter's naive and
#                        fast variant, OpenBLAS, and the machine's ceilings, on 1 and 2 threads;
#                        tables on stdout and in build/bench/bench.txt, build/bench/bench.json,
#                        build/bench/ratios.png and .svg, and the book's table in
#                        build/bench/summary.md. Under 15 minutes on a quiet machine.
#   make bench-quick     the same with --quick: fewer samples, smaller STREAM arrays; < 2 minutes.
#   BENCH_CHAPTER=01     only one chapter's cases;  BENCH_THREADS=1,2  the thread counts.
#
# Timing numbers are only meaningful on an otherwise idle machine; no test asserts any of them.

BENCH_DIR     := $(BUILD)/bench
BENCH_THREADS ?= 1,2
BENCH_CHAPTER ?=
BENCH_OBJ     := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard bench/*.c))
# OpenBLAS (the matmul reference, and PyTorch's BLAS) picks its kernels for the CPU when it is
# loaded, unless OPENBLAS_CORETYPE names them; some environments set that globally (e.g. to
# Haswell, AVX2 only). Both sides get the same kernels: BENCH_OPENBLAS_CORETYPE if set, otherwise
# OpenBLAS's own choice (the variable removed). The report prints the kernels tfm's rows used.
BENCH_OPENBLAS_CORETYPE ?=
BENCH_ENV = $(if $(BENCH_OPENBLAS_CORETYPE),env OPENBLAS_CORETYPE=$(BENCH_OPENBLAS_CORETYPE),env -u OPENBLAS_CORETYPE)

# bench/ is linked into tfm (src/bench.c is `tfm bench`). The archive is named once more after
# the bench objects, which call into it, and OpenBLAS is the matmul reference.
$(TFM): $(BENCH_OBJ)
$(TFM): LDLIBS := $(LIB) -lopenblas $(LDLIBS)
$(BUILD)/obj/src/bench.o: ALL_CFLAGS += -Ibench
# The build's flags, for the report: what naive files get, and what fast files add.
$(BUILD)/obj/bench/report.o: ALL_CFLAGS += -DTFM_BENCH_CFLAGS='"$(CSTD) $(OPT) -fopenmp $(CFLAGS)"' \
                                           -DTFM_BENCH_FAST_CFLAGS='"$(FAST_CFLAGS)"'
# STREAM's copy must stay a loop of plain stores, not become a memcpy call (bench/ceilings.c).
$(BUILD)/obj/bench/ceilings.o: ALL_CFLAGS += $(if $(findstring clang,$(CC)),-fno-builtin,-fno-tree-loop-distribute-patterns)

.PHONY: bench bench-quick
bench: BENCH_MODE :=
bench-quick: BENCH_MODE := --quick
# Chapter 08's peer, tokenizers.js, is timed by node in its own process (bench/tokenizers_js_bench.mjs)
# when the run includes chapter 08; tfm bench reads its file (--peer).
BENCH_PEER := $(if $(BENCH_CHAPTER),$(filter 8 08 tokenizer 08-tokenizer,$(BENCH_CHAPTER)),all)
bench bench-quick: deps
	@$(MAKE) --no-print-directory $(TFM)
	@mkdir -p $(BENCH_DIR)
	$(TFM) bench --list $(BENCH_MODE) $(BENCH_CHAPTER) > $(BENCH_DIR)/cases.json
	$(BENCH_ENV) $(PYTHON) bench/torch_bench.py --cases $(BENCH_DIR)/cases.json --threads $(BENCH_THREADS) \
	  $(BENCH_MODE) --out $(BENCH_DIR)
	$(if $(BENCH_PEER),TFM_BUILD=$(BUILD) node bench/tokenizers_js_bench.mjs $(BENCH_MODE) --out $(BENCH_DIR)/tokenizers-js.json)
	@rc=0; $(BENCH_ENV) $(TFM) bench $(BENCH_MODE) $(BENCH_CHAPTER) --threads $(BENCH_THREADS) \
	   --torch $(BENCH_DIR)/torch-shipped.json --torch $(BENCH_DIR)/torch-tuned.json \
	   $(if $(BENCH_PEER),--peer $(BENCH_DIR)/tokenizers-js.json) \
	   --json $(BENCH_DIR)/bench.json --dat $(BENCH_DIR)/ratios.dat > $(BENCH_DIR)/bench.txt || rc=$$?; \
	 cat $(BENCH_DIR)/bench.txt; \
	 if grep -qv '^#' $(BENCH_DIR)/ratios.dat; then for ext in png svg; do \
	   gnuplot -e "datafile='$(BENCH_DIR)/ratios.dat'; outfile='$(BENCH_DIR)/ratios.$$ext'" \
	     bench/ratios.gp || rc=1; done; else echo "no ratio chart: the run has no case rows"; fi; \
	 tools/bench-summary.py $(BENCH_DIR)/bench.json > $(BENCH_DIR)/summary.md || rc=1; \
	 echo "written: $(BENCH_DIR)/bench.txt bench.json summary.md ratios.png ratios.svg"; \
	 exit $$rc
