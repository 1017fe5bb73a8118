#!/bin/sh
# sanitizer-reports.sh DIR: sum up the ASan/LSan/UBSan reports that a
# sanitized criu wrote into DIR (ASAN_OPTIONS/UBSAN_OPTIONS log_path).
# A report with a frame in criu/tmp-files*.c is a finding of this project
# and fails; one only in upstream CRIU code is listed (its first frame),
# not counted as ours.
set -u
dir=$1
ours=0 theirs=0
for f in "$dir"/*; do
	[ -f "$f" ] || continue
	if grep -q 'tmp-files' "$f"; then
		ours=$((ours + 1))
		echo "=== sanitizer report in the tmp-files code: $f"
		cat "$f"
	else
		theirs=$((theirs + 1))
	fi
done
if [ "$theirs" -gt 0 ]; then
	echo "sanitizer reports only in upstream CRIU code: $theirs file(s); distinct first frames:"
	cat "$dir"/* 2>/dev/null | grep -h -E 'ERROR: |runtime error|^    #1 ' | sed -e 's/^==[0-9]*==//' \
		-e 's/ 0x[0-9a-f]*//g' -e 's/^ *//' | sort | uniq -c | sort -rn | head -40
fi
echo "sanitizer reports: $ours in the tmp-files code, $theirs in upstream CRIU only"
[ "$ours" -eq 0 ]
