# The speed ratios of every fast variant, from `tfm bench --dat` (make bench): for each case and
# thread count, time(X) / time(fast) for X = naive, PyTorch as shipped, PyTorch tuned, and the
# reference (OpenBLAS) where there is one. Above 1 (the dashed line) fast is faster.
# Called with: datafile, outfile (.png or .svg).
if (!exists("title")) title = "tfm fast variants: time(X) / time(fast), > 1 means fast is faster"
if (outfile[strlen(outfile)-3:] eq "svg") {
    set terminal svg size 1400,700 dynamic noenhanced font "sans,11"
} else {
    set terminal pngcairo size 1400,700 noenhanced font "sans,10"
}
set output outfile
set title title
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set ylabel "time(X) / time(fast)   (log scale)"
set grid ytics
set xtics rotate by -40 scale 0 font ",9"
set key outside right top vertical
set arrow from graph 0, first 1 to graph 1, first 1 nohead dashtype 2 linecolor rgb "#444444"
set bmargin 12
set rmargin 24
plot datafile using 2:xtic(1) title "vs naive" linecolor rgb "#9e9e9e", \
     ''       using 3 title "vs PyTorch shipped" linecolor rgb "#d44a3a", \
     ''       using 4 title "vs PyTorch tuned" linecolor rgb "#f59e72", \
     ''       using 5 title "vs OpenBLAS" linecolor rgb "#3a6fd4"
