# Chapter 01: the attention probabilities of the golden case "causal", head 0, as computed by
# tfm's naive C code, drawn as a heatmap (query x key).
FIGURES += $(FIG)/attention_heatmap.$(FIGEXT)

$(FIG)/attention_causal.safetensors: $(TFM) oracle/golden/01-attention.safetensors.gz
	@mkdir -p $(@D)
	$(TFM) run attention --variant naive --case causal oracle/golden/01-attention.safetensors.gz $@

$(FIG)/attention_heatmap.$(FIGEXT): $(FIG)/attention_causal.safetensors plots/attention_heatmap.gp
	$(TFM) slice $< probs --at 0,0 $(FIG)/attention_causal.dat
	gnuplot -e "datafile='$(FIG)/attention_causal.dat'; outfile='$@'; \
	  title='Chapter 01: causal attention, 13 tokens, head 0'" plots/attention_heatmap.gp
