# Shell helpers every benchmark (and scripts/leak-check.sh) sources (`. benches/lib.sh` from the repository root).
# Figures come from benches/measure.py; see its docstring for the fields it writes.

# Polls a command every 50 ms until it succeeds; fails once SECONDS have passed.
wait_until() { # seconds command...
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# The median of the numbers on stdin, one per line (nothing for no input).
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

# The median of field FIELD over the lines of RESULTS whose first word is LABEL,
# each divided by SCALE and printed with DECIMALS decimals.
column() { # results label field [scale] [decimals]
  awk -v c="$2" -v f="$3" -v s="${4:-1}" -v d="${5:-3}" '$1 == c { printf "%.*f\n", d, $f / s }' "$1" | median
}

# measure.py's fields, counting the label a results line starts with as field 1.
F_WALL=2 F_CPU=3 F_RSS=4 F_RCHAR=5 F_READ=6 F_ANON=7 F_FILE=8 F_OWN=9
