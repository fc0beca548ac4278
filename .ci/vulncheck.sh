#!/usr/bin/env bash
# govulncheck over the module against VULNDB (a URL, or file:///dir holding
# a copy of the database). When VULNDB cannot be reached, it builds a copy
# from the Go vulnerability database's own repository, the module
# VULNDB_MODULE fetched through the module proxy: its data/osv entries,
# written out by that repository's cmd/gendb, kept under
# ~/.cache/changeprop/vulndb/<version>. It says NOT RUN, and exits 0, when
# neither works, unless VULNCHECK_REQUIRED=1; it exits non-zero when
# vulnerabilities affect the code or the scan fails for another reason.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
GO=${GO:-go}
GOVULNCHECK=${GOVULNCHECK:-golang.org/x/vuln/cmd/govulncheck@v1.9.0}
VULNDB=${VULNDB:-https://vuln.go.dev}
VULNDB_MODULE=${VULNDB_MODULE:-golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018}
bin="$PWD/bin"

not_run() {
	echo "govulncheck: NOT RUN: $1"
	echo "  (make vulncheck VULNDB=file:///path/to/a/copy runs it against a local copy;"
	echo "   VULNCHECK_REQUIRED=1 makes this an error)"
	[ "${VULNCHECK_REQUIRED:-}" = 1 ] && exit 1
	exit 0
}

# module_db prints the directory of a database built from VULNDB_MODULE,
# building it once per version; its messages go to standard error.
module_db() {
	local tmp info version dir when cache
	tmp=$(mktemp -d) || return 1
	# shellcheck disable=SC2064 # expand tmp now
	trap "rm -rf '$tmp'" RETURN
	# The module cache answers at once for a version it holds; a query
	# (@latest) asks the proxy and names the version it found.
	info=$(cd "$tmp" && GOFLAGS='' GO111MODULE=on "$GO" mod download -json "$VULNDB_MODULE") || {
		echo "downloading $VULNDB_MODULE failed" >&2
		return 1
	}
	version=$(sed -n 's/^[[:space:]]*"Version": "\(.*\)",$/\1/p' <<<"$info")
	dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/changeprop/vulndb/$version
	if [ -n "$version" ] && [ -f "$cache/db/index/modules.json" ]; then
		echo "$cache/db"
		return 0
	fi
	when=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p' <<<"$info")")
	if [ -z "$version" ] || [ ! -d "$dir/data/osv" ] || [ -z "$when" ]; then
		echo "$VULNDB_MODULE: no version, no data/osv or no time" >&2
		return 1
	fi
	(cd "$dir" && GOFLAGS=-mod=mod "$GO" build -o "$tmp/gendb" ./cmd/gendb) >&2 || return 1
	# gendb reads the entries from a git repository, dated by their commits:
	# one commit at the module's time.
	mkdir -p "$tmp/repo/data/osv" && cp "$dir"/data/osv/*.json "$tmp/repo/data/osv/" || return 1
	(cd "$tmp/repo" && git init -q && git add data &&
		GIT_AUTHOR_DATE=$when GIT_COMMITTER_DATE=$when \
			git -c user.name=vulndb -c user.email=vulndb@localhost commit -qm "$VULNDB_MODULE") >&2 || return 1
	"$tmp/gendb" -repo "$tmp/repo" -out "$tmp/db" 2>/dev/null || {
		echo "gendb failed" >&2
		return 1
	}
	mkdir -p "$cache" && rm -rf "$cache/db" && mv "$tmp/db" "$cache/db" || return 1
	echo "$cache/db"
}

if ! out=$(GOBIN="$bin" CGO_ENABLED=0 "$GO" install "$GOVULNCHECK" 2>&1); then
	not_run "installing $GOVULNCHECK failed: $(tail -1 <<<"$out")"
fi
db=$VULNDB
out=$("$bin/govulncheck" -db "$db" ./... 2>&1)
rc=$?
if [ $rc -ne 0 ] && grep -q "fetching vulnerabilities" <<<"$out"; then
	unreachable=$(grep -m1 "fetching vulnerabilities" <<<"$out")
	if ! dir=$(module_db); then
		not_run "the vulnerability database $VULNDB cannot be reached ($unreachable), and no copy could be built from $VULNDB_MODULE"
	fi
	echo "govulncheck: $VULNDB cannot be reached; using the copy built from $VULNDB_MODULE ($(cat "$dir/index/db.json"))"
	db=file://$dir
	out=$("$bin/govulncheck" -db "$db" ./... 2>&1)
	rc=$?
fi
echo "$out"
echo "govulncheck: ran against $db with $("$GO" env GOVERSION) (exit $rc)"
exit $rc
