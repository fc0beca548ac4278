#!/usr/bin/env bash
# Runs each fuzz target (package:Name ...) for FUZZTIME. Go 1.26's fuzzing
# coordinator can fail a run that found nothing with a bare "context deadline
# exceeded" when -fuzztime ends while a worker is busy (golang/go#75804,
# fixed in Go 1.27): such a run, with no failing input written, is run once
# more. A real finding (a failing input, a panic, a test error) fails at once.
set -uo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-2m}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for t in "$@"; do
	pkg=${t%%:*} name=${t#*:}
	for attempt in 1 2; do
		echo "fuzz $t for $FUZZTIME"
		"$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "./$pkg/" 2>&1 | tee "$log"
		rc=${PIPESTATUS[0]}
		[ "$rc" -eq 0 ] && break
		if [ $attempt -eq 1 ] && grep -q 'context deadline exceeded' "$log" &&
			! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
			echo "fuzz $t: the coordinator's deadline race (golang/go#75804), nothing found; once more"
			continue
		fi
		exit "$rc"
	done
done
