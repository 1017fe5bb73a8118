#!/bin/sh
# bounded.sh LIMIT STEP COMMAND...: run COMMAND with a time limit (as
# timeout(1) takes it: 90s, 20m). If the limit is reached, COMMAND and
# its process group are killed and the step is named in the failure.
set -u
limit=$1 step=$2
shift 2
timeout -k 30 "$limit" "$@"
rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	echo "FAILED: $step did not finish within $limit (killed)" >&2
fi
exit "$rc"
