#!/bin/sh
# bounded.sh LIMIT STEP COMMAND...: run COMMAND with a time limit (as
# timeout(1) takes it: 90s, 20m). If the limit is reached, COMMAND gets
# SIGINT (pytest then runs its teardown, which kills what the tests
# started), and 30 s later its process group SIGKILL; the failure names
# the step.
set -u
limit=$1 step=$2
shift 2
timeout -s INT -k 30 "$limit" "$@"
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	echo "FAILED: $step did not finish within $limit (killed)" >&2
fi
exit "$rc"
