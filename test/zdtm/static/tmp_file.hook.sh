#!/bin/sh
# Shared by the tmp_fileNN.hook scripts: ". zdtm/static/tmp_file.hook.sh".
#
# The paths saved with --tmp-file are read from the test's .desc. They are
# paths as the test sees them: in the h flavor the same on the host, in
# the ns and uns flavors under the test's root, which is test/ (the hook's
# cwd). At --pre-dump the host path of each is found by its inode through
# /proc/PID/root; at --pre-restore it is removed, so that restore can only
# bring it back from the images; at --post-restore it must be back.

set -eu

test_name=${0%.hook}
state=$test_name.tmp-files

saved_paths() {
	tr ' ' '\n' < "$test_name.desc" | tr -d "'\"{}," | awk 'take { print; take = 0 } $0 == "--tmp-file" { take = 1 }'
}

ident() {
	stat -c '%d:%i' "$1" 2>/dev/null || true
}

fail() {
	echo "$test_name.hook: $*" >&2
	exit 1
}

case "$1" in
--pre-dump)
	: > "$state"
	for p in $(saved_paths); do
		want=$(ident "/proc/$ZDTM_TEST_PID/root$p")
		[ -n "$want" ] || fail "$p does not exist in the test's root"
		found=
		for host in "$p" ".$p"; do
			[ "$(ident "$host")" = "$want" ] && found=$host && break
		done
		[ -n "$found" ] || fail "can't find $p of the test on the host"
		echo "$found" >> "$state"
	done
	;;
--pre-restore)
	# zdtm's root for the ns and uns flavors has a /tmp of mode 0777, not
	# sticky: any user could swap what is in it, and restore rightly
	# refuses to write through it. Make it what a /tmp is, 1777.
	! grep -q '^\./tmp/' "$state" || chmod 1777 ./tmp
	while read -r host; do
		[ -e "$host" ] || [ -L "$host" ] || fail "$host disappeared after dump"
		rm -rf "$host"
		if [ -e "$host" ] || [ -L "$host" ]; then
			fail "can't remove $host"
		fi
		echo "removed $host"
	done < "$state"
	;;
--post-restore)
	while read -r host; do
		[ -e "$host" ] || [ -L "$host" ] || fail "$host was not restored"
	done < "$state"
	;;
--clean)
	for p in $(saved_paths); do
		rm -rf "$p" ".$p"
	done
	rm -f "$state"
	;;
esac
exit 0
