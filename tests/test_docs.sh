#!/bin/bash
# test_docs.sh - the repository is self-sufficient: the reference documents the code cites
# (KSA_SPEC, DESIGN, STYLE, CHECKPOINT_FORMAT, ENVIRONMENT) are in docs/ and every section
# cited exists (scripts/check_citations.py). Prints a cmocka-style summary.
. "$(dirname "$0")/shlib.sh"
set -u

every_cited_document_and_section_exists() {
    python3 scripts/check_citations.py >"$TMP/cite" || { cat "$TMP/cite"; return 1; }
    grep -q "citations: [1-9][0-9]* checked, 0 unresolved" "$TMP/cite"
}

a_wrong_section_is_reported() {
    mkdir -p "$TMP/repo/docs" "$TMP/repo/src/x"
    cp docs/*.md "$TMP/repo/docs/"
    rm "$TMP/repo/docs/DESIGN.md"
    local no=99 # (built here so that this file itself cites nothing wrong)
    printf '/* KSA_SPEC.md §6.1 and §3.2; DESIGN.md §4 */\n/* §%s.1 */\n' $no >"$TMP/repo/src/x/a.c"
    if python3 scripts/check_citations.py "$TMP/repo" >"$TMP/out"; then
        echo "expected unresolved citations"; return 1
    fi
    grep -q "src/x/a.c:1: docs/DESIGN.md does not exist" "$TMP/out"
    grep -q "src/x/a.c:2: §$no.1 is a section of none of" "$TMP/out"
    grep -q "unresolved" "$TMP/out"
    [ "$(grep -c "^src/x/a.c" "$TMP/out")" = 2 ]
}

echo "[==========] Running test_docs.sh"
for t in every_cited_document_and_section_exists a_wrong_section_is_reported; do
    run_test "$t" "$t"
done
finish
