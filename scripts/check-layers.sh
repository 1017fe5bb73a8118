#!/bin/sh
# The tmp-files modules call each other without a cycle: each module's
# undefined tmp_files_* symbols (nm -u of its object) must be defined by
# modules listed BEFORE it below (nm --defined-only), bottom first.
# Usage: check-layers.sh [DIR with the built criu/tmp-files*.o]
set -eu

cd "$(dirname "$0")/.."
. scripts/upstream.conf
DIR=${1:-build/criu-$VERSION/criu}

# Bottom first (README, "Where it plugs into CRIU"; the series adds them in this order)
LAYERS="tmp-files-tree tmp-files-hash tmp-files-tar tmp-files-watch tmp-files tmp-files-manifest
tmp-files-stage tmp-files-place tmp-files-auto tmp-files-precopy tmp-files-dump
tmp-files-restore"

die() { echo "check-layers: $*" >&2; exit 1; }

defs=$(mktemp)
trap 'rm -f "$defs"' EXIT
n=0
for m in $LAYERS; do
	[ -f "$DIR/$m.o" ] || continue
	n=$((n + 1))
	nm --defined-only "$DIR/$m.o" | awk -v m="$m" '$2 ~ /^[TDBR]$/ { print $3, m }' >> "$defs"
done
[ "$n" -gt 0 ] || die "no tmp-files objects in $DIR: build first"

# Every object of the module family must be in the list
for o in "$DIR"/tmp-files*.o; do
	m=$(basename "$o" .o)
	case " $(echo $LAYERS) " in *" $m "*) ;; *) die "$m.o is not in LAYERS of $0" ;; esac
done

bad=0
below=""
for m in $LAYERS; do
	[ -f "$DIR/$m.o" ] || continue
	for sym in $(nm -u "$DIR/$m.o" | awk '{ print $2 }' | grep -E '^(tmp_files?_|restore_tmp_files|dump_tmp_files)' || true); do
		owner=$(awk -v s="$sym" '$1 == s { print $2; exit }' "$defs")
		[ -n "$owner" ] || continue # defined outside the family (a stub, upstream)
		case " $below " in
		*" $owner "*) ;;
		*)
			echo "check-layers: $m calls $sym of $owner, which is not below it" >&2
			bad=1
			;;
		esac
	done
	below="$below $m"
done
[ "$bad" = 0 ] || die "a module calls one above it (or itself through another): a cycle"
echo "check-layers: $n modules, each calls only those below it"
