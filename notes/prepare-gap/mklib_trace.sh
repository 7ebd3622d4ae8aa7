#!/bin/sh
# Host trace of `make -s -j2 lib/` in a copy of the built tinyconfig tree, recorded as in
# notes/uml-prepare-gap-findings.md ("make lib/ under LANG=C"), then `replay --validate`.
#   mklib_trace.sh TREE_COPY OUT_DIR [LOCALE]     (LOCALE: C (default) or C.UTF-8)
# TREE_COPY is created from ~/.cache/rmaplab/linux-source-6.12 if missing (1.7 GB) and
# settled with one make; lib/**/*.o are deleted before the traced make.  OUT_DIR must not exist.
set -eu
tree=$1 out=$2 loc=${3:-C}
rmaplab=${RMAPLAB:-rmaplab}
src=${RMAPLAB_CACHE:-$HOME/.cache/rmaplab}/linux-source-6.12
env="PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/tmp LANG=$loc LC_COLLATE=C LC_NUMERIC=C PYTHONCOERCECLOCALE=0"
if [ ! -d "$tree" ]; then
	cp -a "$src" "$tree"
	(cd "$tree" && env -i $env make -s -j2 lib/ >/dev/null)
fi
find "$tree/lib" -name '*.o' -delete
cd "$tree"
env -i $env setarch x86_64 -L -R "$rmaplab" trace -o "$out" --label "mklib-$loc" -- make -s -j2 lib/
trace="$out/trace.jsonl.gz"
"$rmaplab" replay --validate "$trace"
