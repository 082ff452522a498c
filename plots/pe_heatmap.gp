# A matrix from `tfm slice` as a heatmap with a diverging palette (negative blue, positive red),
# for the PE table (position x dimension) and for the similarity PE(p) . PE(q).
# Called by `make figures` with: datafile, outfile (.png or .svg), title, xlab, ylab, cblab,
# and optionally cbmax (the palette runs over [-cbmax, cbmax]; default: the largest |value|).
if (!exists("title")) title = "sinusoidal positional encoding"
if (!exists("xlab")) xlab = "dimension j"
if (!exists("ylab")) ylab = "position p"
if (!exists("cblab")) cblab = "value"
if (outfile[strlen(outfile)-3:] eq "svg") {
    set terminal svg size 640,600 dynamic font "sans,12"
} else {
    set terminal pngcairo size 640,600 font "sans,11"
}
set output outfile
set title title
set xlabel xlab
set ylabel ylab
set cblabel cblab
stats datafile matrix nooutput
if (!exists("cbmax")) cbmax = (abs(STATS_min) > abs(STATS_max) ? abs(STATS_min) : abs(STATS_max))
set cbrange [-cbmax:cbmax]
set xrange [-0.5:STATS_size_x - 0.5]
set yrange [STATS_size_y - 0.5:-0.5]   # row 0 at the top, as the matrix is written
set tics out
set palette defined (0 "#2c5fa8", 0.5 "#ffffff", 1 "#b2182b")
unset key
plot datafile matrix with image
