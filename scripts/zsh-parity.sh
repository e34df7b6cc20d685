#!/usr/bin/env bash
# Runs zsh's own test suite (Test/*.ztst, through `make check`) three ways on
# the same Debian source and checks that the patched shell behaves as stock:
#
#   1. stock:   the unpatched build (target/zsh-build/stock)
#   2. patched: the patched build with no wrapper configured
#   3. session: the patched build inside an execgate session whose policy runs
#               every exec in place, so every external command the tests run
#               is asked about from inside the shell (the fast path) and
#               decided by the escalation server
#
# Prints each test file's result for each way (pass, FAIL or skip, with the
# number of test cases the file skipped itself), the totals per way, how many
# execs the server decided in way 3, and as its last line `N passed, N failed`:
# test files whose result in ways 2 and 3 matched way 1, and those that did
# not. A file that differs is run again alone in every way; if the three then
# agree, the suite raced (the report says so) and the file counts as matched.
# Exits non-zero when any file differs, when way 3 decided no exec at all
# (it never reached the server), or when a way produced no result for a file.
#
# The ways run one after the other (the suite is mostly sleeps and waits; the
# machines are small). Logs and reports go to target/zsh-parity/.
# EXECGATE_PARITY_TESTS=A05 (a prefix, as make check's TESTNUM) runs a subset.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
out="$repo/target/zsh-parity"
tests_prefix=${EXECGATE_PARITY_TESTS:-}
started=$SECONDS

bash scripts/build-zsh.sh
bash scripts/build-zsh.sh --stock
cargo build --locked --quiet -p execgate-exec-wrapper -p execgate-tests \
    --bin execgate-exec-wrapper --bin session-host
rm -rf "$out"
mkdir -p "$out/bin"
# Copies, so that a cargo build running meanwhile cannot swap them mid-run.
cp "$repo/target/debug/execgate-exec-wrapper" "$repo/target/debug/session-host" "$out/bin/"
wrapper="$out/bin/execgate-exec-wrapper"
host="$out/bin/session-host"

# Runs make check in build tree $2 for way $1, the rest of the arguments
# prefixing make (the session host for way 3). make check's own status is not
# used: the per-file results are read from its output.
run_way() {
    local way=$1 tree=$2 began=$SECONDS
    shift 2
    echo "zsh-parity: way $way: make check in ${tree#"$repo"/}"
    (cd "$tree" && env -u EXECGATE_WRAPPER -u EXECGATE_SOCKET_FD \
        "$@" make check TESTNUM="$tests_prefix" >"$out/way$way.log" 2>&1) || true
    echo "zsh-parity: way $way took $((SECONDS - began)) s"
}

# Runs one test file $2 again, alone, in way $1 (build tree $3, the rest
# prefixing make) and prints its result. zsh's own suite has races under
# load: once, B07emulate's pipelines wrote into a closed pipe in the stock
# build alone.
rerun_file() {
    local way=$1 file=$2 tree=$3 log="$out/rerun-$2-way$1.log"
    shift 3
    (cd "$tree" && env -u EXECGATE_WRAPPER -u EXECGATE_SOCKET_FD \
        "$@" make check TESTNUM="${file:0:3}" >"$log" 2>&1) || true
    results "$log" | awk -v f="$file" '$1 == f { print $2 }'
}

# Turns a make check log into `FILE RESULT` lines, one per test file started.
# RESULT is pass, FAIL or skip, with `+Ncase` appended when the file skipped
# N of its test cases itself; a file that started and never reported is FAIL.
results() {
    awk '
        function finish(result) {
            if (file == "") return
            if (cases) result = result "+" cases "case"
            print file, result
            file = ""; cases = 0
        }
        /^[^ ]*\.ztst: starting\.$/ {
            finish("FAIL")
            file = $1; sub(/:$/, "", file); sub(/^.*\//, "", file); sub(/\.ztst$/, "", file)
            next
        }
        file != "" && /^Test case skipped: / { cases++; next }
        file != "" && index($0, file ".ztst: all tests successful.") { finish("pass"); next }
        file != "" && index($0, file ".ztst: test failed.") { finish("FAIL"); next }
        file != "" && index($0, file ".ztst: test XPassed.") { finish("FAIL"); next }
        file != "" && index($0, file ".ztst: skipped (") { finish("skip"); next }
        END { finish("FAIL") }
    ' "$1"
}

run_way 1 target/zsh-build/stock
run_way 2 target/zsh-build/patched
run_way 3 target/zsh-build/patched "$host" "$wrapper" "$out/session-report"

for way in 1 2 3; do
    results "$out/way$way.log" >"$out/way$way.results"
done

status=0
decided=$(awk '$1 == "decided" { print $2 }' "$out/session-report" 2>/dev/null || true)
refused=$(awk '$1 == "refused" { print $2 }' "$out/session-report" 2>/dev/null || true)
programs=$(awk '$1 == "programs" { print $2 }' "$out/session-report" 2>/dev/null || true)

echo
printf '%-22s %-16s %-16s %-16s\n' "test file" "1 stock" "2 patched" "3 session"
matched=0
differed=0
# Every file any way reported on, in suite order.
files=$(cat "$out"/way{1,2,3}.results | awk '{ print $1 }' | sort -u)
if [[ -z $files ]]; then
    echo "zsh-parity: no test file reported a result; see $out/way1.log" >&2
    status=1
fi
for file in $files; do
    r1=$(awk -v f="$file" '$1 == f { print $2 }' "$out/way1.results")
    r2=$(awk -v f="$file" '$1 == f { print $2 }' "$out/way2.results")
    r3=$(awk -v f="$file" '$1 == f { print $2 }' "$out/way3.results")
    mark=""
    if [[ -n $r1 && $r2 == "$r1" && $r3 == "$r1" ]]; then
        matched=$((matched + 1))
    else
        # Run again alone in every way: the same result everywhere then is
        # a race in the suite, shown as such; anything else differs.
        a1=$(rerun_file 1 "$file" target/zsh-build/stock)
        a2=$(rerun_file 2 "$file" target/zsh-build/patched)
        a3=$(rerun_file 3 "$file" target/zsh-build/patched "$host" "$wrapper" "$out/rerun-report")
        if [[ -n $a1 && $a2 == "$a1" && $a3 == "$a1" ]]; then
            matched=$((matched + 1))
            mark="  <- differed once; run again: $a1 in every way"
        else
            differed=$((differed + 1))
            mark="  <- differs (run again: ${a1:-none} ${a2:-none} ${a3:-none})"
        fi
    fi
    printf '%-22s %-16s %-16s %-16s%s\n' "$file" "${r1:-none}" "${r2:-none}" "${r3:-none}" "$mark"
done

echo
for way in 1 2 3; do
    awk -v way="$way" '
        { split($2, r, "+") }
        r[1] == "pass" { pass++ } r[1] == "FAIL" { fail++ } r[1] == "skip" { skip++ }
        $2 ~ /case$/ { n = $2; sub(/^[^+]*\+/, "", n); sub(/case$/, "", n); cases += n }
        END { printf "way %s: %d passed, %d failed, %d skipped (and %d test cases skipped inside passing files)\n", way, pass, fail, skip, cases }
    ' "$out/way$way.results"
done
echo "way 3: the server decided ${decided:-no} execs Run (${programs:-0} distinct programs), refused ${refused:-?}"
if [[ -z $decided || $decided -eq 0 ]]; then
    echo "zsh-parity: way 3 never reached the server; see $out/way3.log" >&2
    status=1
fi
# A refusal is printed, not failed on: a wrapper killed mid-request (the
# suite kills process groups) shows up as one. Any refusal that stopped a
# command the suite needed already shows as a differing test file above.
if [[ ${refused:-0} -ne 0 ]]; then
    echo "way 3: refused requests:"
    grep '^refusal ' "$out/session-report" || true
fi
if ((differed)); then
    echo "zsh-parity: ways differ; logs in ${out#"$repo"/}/way{1,2,3}.log" >&2
    status=1
fi
echo "zsh-parity: took $((SECONDS - started)) s"
echo "parity with way 1 (test files whose result matched in ways 2 and 3):"
echo "$matched passed, $differed failed"
exit $status
