# Sourced by the bench scripts: `median` prints the median of the numbers on standard input, one
# per line, or "-" when there are none.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
