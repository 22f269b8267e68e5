#!/usr/bin/env bash
# Fetches the evidence tools an analyst uses on a sealed checkpoint — Debian sid's `age` (with
# `age-keygen`), `cosign` (to verify signed statements offline) and `zstd` — into a cache directory, without touching the system's packages, the
# way fetch.sh fetches the runtime. Idempotent: a second run with a complete cache does nothing.
# Prints the cache directory on stdout; its bin/ holds age, age-keygen, cosign and zstd.
#
#   test/runtime/fetch-evidence.sh
#   EVIDENCE_CACHE=/some/dir test/runtime/fetch-evidence.sh
#
# Facts (Debian 12 host): sid's age 1.3.2 is a Go binary that needs only an old glibc and runs as
# unpacked. zstd: the system's when there is one (Debian's images have it); otherwise the host
# suite's own `zstd` and `libzstd1`, unpacked and run with LD_LIBRARY_PATH.
set -euo pipefail

cache=${EVIDENCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/checkpoint-gateway/evidence-tools}
stamp="$cache/.complete-v2"
if [[ -f $stamp ]]; then echo "$cache"; exit 0; fi

mkdir -p "$(dirname "$cache")"
work=$(mktemp -d)
tmp=$(mktemp -d "$cache.tmp.XXXXXX") && chmod 755 "$tmp"
trap 'rm -rf "$work" "$tmp"' EXIT

# shellcheck source=apt-download.sh
. "$(dirname "$0")/apt-download.sh"

download "$tmp" sid age cosign
mkdir -p "$tmp/bin"
for b in age age-keygen cosign; do cp "$tmp/sid/usr/bin/$b" "$tmp/bin/"; done

if system_zstd=$(command -v zstd); then
  ln -s "$system_zstd" "$tmp/bin/zstd"
else
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}")
  download "$tmp" "$suite" zstd libzstd1
  # The wrapper names the final cache path: the temp dir is renamed to it below.
  libdir="$cache/$suite/usr/lib/x86_64-linux-gnu"
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$libdir" "$cache/$suite/usr/bin/zstd" >"$tmp/bin/zstd"
  chmod +x "$tmp/bin/zstd"
fi
rm -rf "$tmp/sid"

"$tmp/bin/age" --version >&2
case $("$tmp/bin/age" --version) in
  v1.3.* | 1.3.*) ;;
  *) echo "fetch-evidence.sh: sid's age is not 1.3.x" >&2; exit 1 ;;
esac
"$tmp/bin/cosign" version >&2 2>/dev/null || { echo "fetch-evidence.sh: sid's cosign does not run here" >&2; exit 1; }

# Install with one rename, stamp included. Another run may have finished first: keep its cache.
touch "$tmp/.complete-v2"
[[ -f $stamp ]] || rm -rf "$cache" # an incomplete leftover
if ! mv -T "$tmp" "$cache" 2>/dev/null && [[ ! -f $stamp ]]; then
  echo "fetch-evidence.sh: cannot install $cache" >&2
  exit 1
fi
"$cache/bin/zstd" --version >&2
echo "$cache"
