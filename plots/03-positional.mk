# Chapter 03: the sinusoidal table of the golden case "pe_figure" (positions 0..127, E = 64) as
# computed by tfm's fast C code, drawn three ways: a few columns against the position, the whole
# table as a heatmap, and the similarity PE(p) . PE(q) of every pair of positions.
FIGURES += $(FIG)/pe_curves.$(FIGEXT) $(FIG)/pe_heatmap.$(FIGEXT) $(FIG)/pe_similarity.$(FIGEXT)

$(FIG)/pe_table.safetensors: $(TFM) oracle/golden/03-positional.safetensors.gz
	@mkdir -p $(@D)
	$(TFM) run pe --variant fast --case pe_figure oracle/golden/03-positional.safetensors.gz $@

$(FIG)/pe_table.dat: $(FIG)/pe_table.safetensors
	$(TFM) slice $< out $@

$(FIG)/pe_curves.$(FIGEXT): $(FIG)/pe_table.dat plots/pe_curves.gp
	gnuplot -e "datafile='$<'; outfile='$@'; \
	  title='Chapter 03: PE columns against position (E = 64)'" plots/pe_curves.gp

$(FIG)/pe_heatmap.$(FIGEXT): $(FIG)/pe_table.dat plots/pe_heatmap.gp
	gnuplot -e "datafile='$<'; outfile='$@'; cbmax=1; cblab='PE[p, j]'; \
	  title='Chapter 03: sinusoidal PE, 128 positions x 64 dimensions'" plots/pe_heatmap.gp

# PE(p) . PE(q) by chapter 00's linear (x w^T with x = w = the table), through a tiny writer.
$(BUILD)/plots/pe_similarity: plots/pe_similarity.c $(LIB)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $< $(LIB) -o $@ $(LDLIBS)

$(FIG)/pe_similarity.dat: $(FIG)/pe_table.safetensors $(BUILD)/plots/pe_similarity $(TFM)
	$(BUILD)/plots/pe_similarity $< $(FIG)/pe_similarity.safetensors
	$(TFM) slice $(FIG)/pe_similarity.safetensors sim $@

$(FIG)/pe_similarity.$(FIGEXT): $(FIG)/pe_similarity.dat plots/pe_heatmap.gp
	gnuplot -e "datafile='$<'; outfile='$@'; xlab='position q'; ylab='position p'; \
	  cblab='PE(p) . PE(q)'; title='Chapter 03: PE(p) . PE(q) depends on p - q only'" \
	  plots/pe_heatmap.gp
