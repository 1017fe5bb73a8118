#!/bin/bash
# run.sh OUT SECONDS TARGET...: run each libFuzzer harness OUT/fuzz_TARGET
# for SECONDS, with the seeds of corpus/TARGET; print one line a target
# (runs, coverage, corpus), and fail on the first finding, naming the
# input that caused it (in OUT/artifacts) and showing the report.
set -u
cd "$(dirname "$0")"
out=$1 secs=$2
shift 2
fail=0
for t in "$@"; do
	work="$out/corpus/$t" art="$out/artifacts/$t"
	mkdir -p "$work" "$art"
	log="$out/fuzz_$t.log"
	# Every ASan/UBSan report is fatal; leaks are checked at each input's end
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		timeout -k 10 $((secs + 60)) "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$art/" "$work" "corpus/$t" >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]*' | cut -d' ' -f2)
	ft=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'ft: [0-9]*' | cut -d' ' -f2)
	corp=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' | cut -d' ' -f2)
	if [ $rc -eq 0 ]; then
		printf 'fuzz %-9s ok: %s runs in %ss, cov %s, ft %s, corpus %s\n' "$t" "${runs:-?}" "$secs" "${cov:-?}" "${ft:-?}" "${corp:-?}"
	else
		printf 'fuzz %-9s FAILED (exit %d) after %s runs; input: %s\n' "$t" $rc "${runs:-?}" "$(ls -t "$art" | head -1 | sed "s|^|$art/|")"
		grep -A30 -m1 -E '^==[0-9]+==ERROR|runtime error|^fuzz stub|deadly signal|timeout' "$log" | head -40
		fail=1
	fi
done
exit $fail
