# Chapter 02: the per-head attention probabilities of the golden case "sentence" (12 tokens,
# E = 32, 8 heads of width 4), computed by tfm's fast C code, drawn as a 2 x 4 grid of heatmaps.
FIGURES += $(FIG)/multihead_heads.$(FIGEXT)

$(FIG)/multihead_sentence.safetensors: $(TFM) oracle/golden/02-multihead.safetensors.gz
	@mkdir -p $(@D)
	$(TFM) run mha --variant fast --case sentence oracle/golden/02-multihead.safetensors.gz $@

$(FIG)/multihead_heads.$(FIGEXT): $(FIG)/multihead_sentence.safetensors plots/multihead_grid.gp
	for h in 0 1 2 3 4 5 6 7; do \
	  $(TFM) slice $< attn_weights --at 0,$$h $(FIG)/multihead_head$$h.dat || exit 1; done
	gnuplot -e "datafmt='$(FIG)/multihead_head%d.dat'; nheads=8; ncols=4; outfile='$@'; \
	  title='Chapter 02: one 12-token input, 8 heads, each with its own softmax'" \
	  plots/multihead_grid.gp
