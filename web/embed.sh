#!/bin/sh
# web/embed.sh FILE... — the page's static files as C (the table web_static_files[] of
# web/web.h), written to stdout; the Makefile compiles it into vma-web.
set -eu
echo '/* generated from web/static/ by web/embed.sh: do not edit */'
echo '#include "web/web.h"'
i=0
for f in "$@"; do
    echo "static const unsigned char file$i[] = {"
    od -An -v -tx1 "$f" | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'
    echo '0x00 };'
    i=$((i + 1))
done
echo 'const WebStaticFile web_static_files[] = {'
i=0
for f in "$@"; do
    echo "    { \"/$(basename "$f")\", file$i, sizeof(file$i) - 1 },"
    i=$((i + 1))
done
echo '};'
echo "const size_t web_static_count = $i;"
