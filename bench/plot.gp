# Added frozen time against total size, one line per variant, log-log.
# gnuplot -e "datafile='frozen-time.dat'; outfile='frozen-time.png'; ncols=N" bench/plot.gp
# datafile: a header row of quoted titles, then "size_mib v1 v2 ..." in ms;
# the last two columns (plain copy, the original patch's tar --gzip) are drawn dashed.
set terminal pngcairo size 900,600 font "sans,10"
set output outfile
set title "criu dump --tmp-file: added frozen time vs. size (medians)"
set xlabel "total size of the saved files (MiB)"
set ylabel "added frozen time (ms); copy and tar --gzip: their wall time"
set logscale xy
set xrange [0.7:800]
set xtics (1, 16, 128, 512)
set grid xtics ytics mytics
set key top left
set datafile missing "NaN"
plot for [i=2:ncols-1] datafile using 1:i title columnheader(i) \
	with linespoints lw 2 pt (i+4) ps 1.2, \
     for [i=ncols:ncols+1] datafile using 1:i title columnheader(i) \
	with linespoints lw 2 pt (i+4) ps 1.2 dt 2
