# Per-token MLM loss over one masked sentence: a bar at each selected position (coloured by what
# the collator put there), nothing at the others (label -100: no loss). The dashed line is their
# mean, which is the MLM loss. Called by `make figures` with: datafile (columns: position, word,
# what the model saw, kind 0 not selected / 1 [MASK] / 2 random word / 3 unchanged, loss),
# outfile (.png or .svg), title (optional).
if (!exists("title")) title = "Chapter 05: MLM loss per token, -log p(original word)"
if (outfile[strlen(outfile)-3:] eq "svg") {
    set terminal svg size 860,460 dynamic font "sans,12"
} else {
    set terminal pngcairo size 860,460 font "sans,11"
}
set output outfile
set title title
set ylabel "cross-entropy (nats)"
set xlabel "token (what the model saw, above each bar)"
set style fill solid 0.85 border -1
set boxwidth 0.7
set xtics rotate by -45 font ",10" nomirror
set ytics nomirror
set grid ytics lc rgb "#dddddd"
set key outside top center horizontal font ",10"
stats datafile using ($4 > 0 ? $5 : 1/0) nooutput
mlm_loss = STATS_mean
top = STATS_max
stats datafile using 1 nooutput
set xrange [-0.7:STATS_max + 0.7]
set yrange [0:1.2 * top]
set arrow from -0.7, mlm_loss to STATS_max + 0.7, mlm_loss nohead dt 2 lw 1.5 lc rgb "#333333"
set label sprintf("mean over the selected tokens = MLM loss = %.3f", mlm_loss) \
    at STATS_max + 0.6, mlm_loss right offset 0, 0.7 font ",10"
plot datafile using 1:($4 == 1 ? $5 : 1/0):xtic(2) with boxes lc rgb "#d44a3a" title "[MASK] (80%)", \
     '' using 1:($4 == 2 ? $5 : 1/0) with boxes lc rgb "#f59e72" title "random word (10%)", \
     '' using 1:($4 == 3 ? $5 : 1/0) with boxes lc rgb "#5c8ac4" title "unchanged (10%)", \
     '' using 1:($4 == 0 ? 0 : 1/0) with points pt 7 ps 0.6 lc rgb "#999999" \
        title "not selected: label -100, no loss", \
     '' using 1:($4 > 0 ? $5 : 1/0):3 with labels offset 0, 0.8 font ",9" notitle
