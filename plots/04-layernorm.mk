# Chapter 04: the golden case "residual" (32 tokens of width 768, each with its own offset and
# scale, two outlier channels) before and after LayerNorm, as computed by tfm's naive C code,
# drawn as two overlaid histograms.
FIGURES += $(FIG)/layernorm_hist.$(FIGEXT)

$(FIG)/layernorm_residual.safetensors: $(TFM) oracle/golden/04-layernorm.safetensors.gz
	@mkdir -p $(@D)
	$(TFM) run layernorm --variant naive --case residual oracle/golden/04-layernorm.safetensors.gz $@

$(FIG)/layernorm_hist.$(FIGEXT): $(FIG)/layernorm_residual.safetensors plots/layernorm_hist.gp
	$(TFM) slice oracle/golden/04-layernorm.safetensors.gz residual/x $(FIG)/layernorm_before.dat
	$(TFM) slice $< out $(FIG)/layernorm_after.dat
	gnuplot -e "before='$(FIG)/layernorm_before.dat'; after='$(FIG)/layernorm_after.dat'; \
	  outfile='$@'; title='Chapter 04: 32 tokens x 768 features, before and after LayerNorm'" \
	  plots/layernorm_hist.gp
