# Chapter 05: the per-token MLM loss over the example sentence of the golden case "sentence_loss"
# (the heads' scores on it, labels from the collator's masking), computed by tfm's naive C code.
# The words and what the model saw at each position come from oracle/export_05.py, which made the
# case (it needs the torch Python, like `make oracle`).
FIGURES += $(FIG)/pretraining_token_loss.$(FIGEXT)

$(FIG)/pretraining_sentence.safetensors: $(TFM) oracle/golden/05-pretraining.safetensors.gz
	@mkdir -p $(@D)
	$(TFM) run mlm-loss --variant naive --case sentence_loss oracle/golden/05-pretraining.safetensors.gz $@

$(FIG)/pretraining_words.txt: oracle/export_05.py ref/ch05_pretraining.py
	@mkdir -p $(@D)
	$(PYTHON) -c 'import sys; sys.dont_write_bytecode = True; sys.path[:0] = ["oracle", "ref"]; \
	  import export_05; export_05.print_words()' > $@

# pretraining_token_loss.dat: position, word, what the model saw, kind, loss (one row per token).
$(FIG)/pretraining_token_loss.$(FIGEXT): $(FIG)/pretraining_sentence.safetensors $(FIG)/pretraining_words.txt plots/pretraining_token_loss.gp
	$(TFM) slice $< token_loss $(FIG)/pretraining_token_loss.row
	tr ' ' '\n' < $(FIG)/pretraining_token_loss.row | paste -d ' ' $(FIG)/pretraining_words.txt - \
	  > $(FIG)/pretraining_token_loss.dat
	gnuplot -e "datafile='$(FIG)/pretraining_token_loss.dat'; outfile='$@'" plots/pretraining_token_loss.gp
