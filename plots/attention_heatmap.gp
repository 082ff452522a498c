# Attention probabilities of one head as a heatmap: row i is query i, column j is key j.
# Called by `make figures` with: datafile (a whitespace matrix from `tfm slice`), outfile (.png
# or .svg), title.
if (!exists("title")) title = "attention probabilities softmax(QK^T/sqrt(d_k) + M)"
if (outfile[strlen(outfile)-3:] eq "svg") {
    set terminal svg size 640,560 dynamic font "sans,12"
} else {
    set terminal pngcairo size 640,560 font "sans,11"
}
set output outfile
set title title
set xlabel "key position j"
set ylabel "query position i"
set cblabel "probability"
set cbrange [0:*]
stats datafile matrix nooutput
set xrange [-0.5:STATS_size_x - 0.5]
set yrange [STATS_size_y - 0.5:-0.5]   # query 0 at the top, as the matrix is written
set size ratio -1
set tics out
set palette defined (0 "#ffffff", 0.25 "#fde0c5", 0.5 "#f59e72", 0.75 "#d44a3a", 1 "#5c0a1e")
unset key
plot datafile matrix with image
