#!/bin/sh
# The long fuzzing run: 10^4 hypothesis examples per entry point of tests/test_fuzz.py; per-test statistics
# (examples run, time, any falsifying example) go to fuzz.txt beside this script.
cd "$(dirname "$0")/../../.." || exit 1
{ cat /proc/loadavg; date -u
  OSNET_EDGE_FUZZ_PROFILE=long nice -n 10 .venv/bin/python -m pytest -q -p no:cacheprovider -p no:logging \
    tests/test_fuzz.py --hypothesis-show-statistics 2>&1 | grep -v '^DEBUG'
  date -u; cat /proc/loadavg; } > benchmarks/results/reliability/fuzz.txt
