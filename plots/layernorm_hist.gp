# Histogram of activations before and after LayerNorm: every value of the [T, E] input and of
# its normalized output, in bins of width `binw`. Called by `make figures` with: before, after
# (whitespace matrices from `tfm slice`), outfile (.png or .svg), title.
if (!exists("title")) title = "activations before and after LayerNorm"
if (!exists("binw")) binw = 0.25
if (outfile[strlen(outfile)-3:] eq "svg") {
    set terminal svg size 720,440 dynamic font "sans,12"
} else {
    set terminal pngcairo size 720,440 font "sans,11"
}
set output outfile
# `tfm slice` writes a matrix; gnuplot's `smooth frequency` bins each matrix row on its own, so
# the values are read as one column instead (tr puts one value on each line).
col(f) = sprintf("< tr -s ' ' '\\n' < '%s'", f)
stats col(before) using 1 nooutput   # before any range is set: stats skips out-of-range values
n = STATS_records
set title title
set xlabel "activation value"
set ylabel "fraction of values per unit"
set xrange [-16:16]
set yrange [0:*]
set tics out
set key top right
set style fill transparent solid 0.45 noborder
bin(v) = binw * floor(v / binw) + binw / 2
# each value adds 1/(n binw): the bars are a density, comparable between the two histograms
plot col(before) using (bin($1)):(1.0 / (n * binw)) smooth frequency with boxes \
         lc rgb "#d44a3a" title "x: residual stream (per-token offset and scale)", \
     col(after) using (bin($1)):(1.0 / (n * binw)) smooth frequency with boxes \
         lc rgb "#2b6cb0" title "LN(x): mean 0, variance 1 per token"
