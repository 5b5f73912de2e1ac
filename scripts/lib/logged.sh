# shellcheck shell=bash
# run_logged LABEL CMD...: runs CMD with its output kept in a file; on failure
# prints the tail of that output and the package the output names, then
# returns CMD's status. apt and npm are loud when they work and say the one
# thing that matters (which package, why) in the middle of it when they fail.

# The package a failed apt or npm run names, or nothing.
failed_package() {
  local log="$1" p
  p="$(sed -n \
    -e 's/^dpkg: error processing package \([^ ]*\).*/\1/p' \
    -e "s/^E: Unable to locate package \(.*\)/\1/p" \
    -e "s/^E: Package '\([^']*\)' has no installation candidate.*/\1/p" \
    -e 's/^E: Version .* for .\([^ ]*\). was not found.*/\1/p' \
    -e 's/^ \([^ ]*\) : Depends: .*/\1/p' \
    -e 's/^npm \(error\|ERR!\) 404 *.\([^@ ]*\)@.*is not in this registry.*/\2/p' \
    -e 's/^npm \(error\|ERR!\) notarget No matching version found for \([^ ]*\)@.*/\2/p' \
    "$log" | head -n 1)"
  if [ -z "$p" ]; then
    # an install script failed: npm names the directory it ran in
    local dir
    dir="$(sed -n 's/^npm \(error\|ERR!\) path \(.*\)$/\2/p' "$log" | head -n 1)"
    if [ -n "$dir" ]; then
      p="$(sed -n 's/^ *"name": *"\([^"]*\)".*/\1/p' "$dir/package.json" 2>/dev/null | head -n 1)"
      if [ "$(cd "$dir" 2>/dev/null && pwd -P)" = "$(pwd -P)" ]; then
        p="${p:-this package} (its own install or prepare script)"
      else
        p="${p:-$(basename "$dir")} ($dir)"
      fi
    fi
  fi
  printf '%s' "$p"
}

run_logged() {
  local label="$1"; shift
  local log status=0
  log="$(mktemp "${TMPDIR:-/tmp}/driftwatch-setup-XXXXXX")"
  "$@" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    local pkg
    pkg="$(failed_package "$log")"
    {
      echo "setup: $label failed (exit $status): $*"
      # dpkg says why a package failed far above apt's summary: show that too
      local why
      why="$(grep -n -B 8 -A 2 '^dpkg: error processing package' "$log" | head -n 30)"
      if [ -n "$why" ]; then
        echo "setup: where it failed (line numbers of its output):"
        printf '%s\n' "$why" | sed 's/^/  | /'
      fi
      echo "setup: last ${TAIL_LINES:-40} lines of its output:"
      tail -n "${TAIL_LINES:-40}" "$log" | sed 's/^/  | /'
      if [ -n "$pkg" ]; then echo "setup: the package that failed: $pkg"; fi
    } >&2
  fi
  rm -f "$log"
  return "$status"
}
