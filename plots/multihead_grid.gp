# Per-head attention probabilities as a grid of heatmaps: panel h shows head h, row i is query i,
# column j is key j. Called by `make figures` with: datafmt (a printf pattern with one %d for the
# head, each file a whitespace matrix from `tfm slice`), nheads, ncols, outfile (.png or .svg),
# title.
if (!exists("ncols")) ncols = 4
if (!exists("title")) title = "attention probabilities per head"
nrows = (nheads + ncols - 1) / ncols
if (outfile[strlen(outfile)-3:] eq "svg") {
    set terminal svg size 300*ncols,300*nrows+60 dynamic font "sans,11"
} else {
    set terminal pngcairo size 300*ncols,300*nrows+60 font "sans,10"
}
set output outfile
set palette defined (0 "#ffffff", 0.25 "#fde0c5", 0.5 "#f59e72", 0.75 "#d44a3a", 1 "#5c0a1e")
set cbrange [0:1]        # one scale for every head, so the panels can be compared
set size ratio -1
set tics out scale 0.5
unset key
stats sprintf(datafmt, 0) matrix nooutput
set xrange [-0.5:STATS_size_x - 0.5]
set yrange [STATS_size_y - 0.5:-0.5]   # query 0 at the top, as the matrix is written
set multiplot layout nrows, ncols title title font ",13" \
    margins 0.06, 0.92, 0.09, 0.88 spacing 0.03, 0.09
do for [h = 0:nheads - 1] {
    set title sprintf("head %d", h)
    set xlabel (h >= (nrows - 1) * ncols ? "key j" : "")
    set ylabel (h % ncols == 0 ? "query i" : "")
    if (h == nheads - 1) { set colorbox; set cblabel "probability" } else { unset colorbox }
    plot sprintf(datafmt, h) matrix with image
}
unset multiplot
