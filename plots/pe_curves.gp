# Sinusoidal positional encoding: a few columns of the table against the position. Column 2i is
# sin(p w_i) and 2i+1 its cos, w_i = 10000^(-2i/E): low columns turn fast, high ones slowly.
# Called by `make figures` with: datafile (a whitespace matrix from `tfm slice`, row = position,
# column = dimension), outfile (.png or .svg), title, E (the table's width).
if (!exists("title")) title = "sinusoidal positional encoding"
if (outfile[strlen(outfile)-3:] eq "svg") {
    set terminal svg size 760,420 dynamic font "sans,12"
} else {
    set terminal pngcairo size 760,420 font "sans,11"
}
set output outfile
set title title
set xlabel "position p"
set ylabel "PE[p, j]"
set yrange [-1.15:1.15]
set key outside right top samplen 2
set grid ytics
set tics out
set autoscale xfix
# gnuplot counts columns from 1: dimension j is column j+1
plot for [j in "4 10 16 23 30"] datafile using 0:(column(int(j) + 1)) with lines lw 2 \
     title sprintf("j = %s (%s)", j, int(j) % 2 ? "cos" : "sin")
