#!/usr/bin/env bash
# Fetches a CRI runtime that implements CheckpointContainer (containerd 2.x from Debian sid, with
# runc and CRIU) into a cache directory, without touching the system's packages. Idempotent:
# a second run with a complete cache does nothing. Prints the cache directory on stdout.
#
#   test/runtime/fetch.sh            # containerd 2.x (sid) + runc + criu + checkpointctl + registry
#   RUNTIME_CACHE=/some/dir test/runtime/fetch.sh
#   test/runtime/fetch.sh --containerd=1.7   # containerd 1.7 (trixie), which lacks CheckpointContainer
#
# --containerd=1.7 fills a separate cache, "<cache>-containerd-1.7", and leaves the default one as it
# is (it runs the default fetch first: its bin dir links runc, criu, docker-registry, busybox and
# checkpointctl from there). Trixie's containerd, shim and ctr run on bookworm's glibc unpatched.
#
# Facts (Debian 12 host, kernel 6.18): sid's runc and criu need glibc >= 2.38, so copies of them get
# the unpacked sid loader and libraries via patchelf (a wrapper script breaks runc, which re-executes
# itself). containerd, its shim and ctr link only an old enough glibc and run as they are.
set -euo pipefail

flavor=
for arg in "$@"; do
  case $arg in
    --containerd=1.7) flavor=containerd-1.7 ;;
    --containerd=2) flavor= ;;
    *) echo "fetch.sh: unknown argument $arg (known: --containerd=1.7, --containerd=2)" >&2; exit 2 ;;
  esac
done

cache=${RUNTIME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/checkpoint-gateway/runtime}

if [[ $flavor == containerd-1.7 ]]; then
  base=$("$0")
  legacy="$cache-containerd-1.7"
  if [[ -f $legacy/.complete-v1 ]]; then echo "$legacy"; exit 0; fi
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  rm -rf "$legacy.tmp" && mkdir -p "$legacy.tmp/bin" "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$work/sources.list"
  opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$work/lists" -o Dir::State::status=/dev/null -o "Dir::Cache=$work/cache"
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq)
  apt-get "${opts[@]}" update >&2
  (cd "$work/debs" && apt-get "${opts[@]}" download containerd >&2)
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$legacy.tmp/trixie"; done
  for b in containerd containerd-shim-runc-v2 ctr; do cp "$legacy.tmp/trixie/usr/bin/$b" "$legacy.tmp/bin/"; done
  rm -rf "$legacy.tmp/trixie"
  for b in runc criu docker-registry busybox checkpointctl; do ln -s "$base/bin/$b" "$legacy.tmp/bin/$b"; done
  "$legacy.tmp/bin/containerd" --version >&2
  case $("$legacy.tmp/bin/containerd" --version) in
    *" 1.7."*) ;;
    *) echo "fetch.sh: trixie's containerd is not 1.7" >&2; exit 1 ;;
  esac
  rm -rf "$legacy" && mv "$legacy.tmp" "$legacy"
  touch "$legacy/.complete-v1"
  echo "$legacy"
  exit 0
fi

stamp="$cache/.complete-v1"
if [[ -f $stamp ]]; then echo "$cache"; exit 0; fi

sid_pkgs=(containerd runc criu checkpointctl busybox-static docker-registry
  libc6 libc-gconv-modules-extra gcc-16-base libgcc-s1 libbsd0 libmd0 libcompel1 libffi8 libgmp10
  libgnutls30t64 libhogweed6t64 libnettle8t64 libidn2-0 libunistring5 libp11-kit0 libtasn1-6
  libjansson4 libmnl0 libnftnl11 libnftables1 libxtables12 libnet9 libnl-3-200 libprotobuf-c1
  libseccomp2 libuuid1)
bookworm_pkgs=(patchelf)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$cache.tmp" && mkdir -p "$cache.tmp"

# shellcheck source=apt-download.sh
. "$(dirname "$0")/apt-download.sh"

download "$cache.tmp" sid "${sid_pkgs[@]}"
download "$cache.tmp" bookworm "${bookworm_pkgs[@]}"

bin="$cache.tmp/bin"
mkdir -p "$bin"
for b in containerd containerd-shim-runc-v2 ctr runc criu checkpointctl docker-registry; do
  found=
  for dir in usr/bin usr/sbin bin sbin; do
    [[ -e $cache.tmp/sid/$dir/$b ]] && { cp "$cache.tmp/sid/$dir/$b" "$bin/"; found=1; break; }
  done
  [[ -n $found ]] || { echo "fetch.sh: $b is missing from the sid packages" >&2; exit 1; }
done
cp "$cache.tmp/sid/bin/busybox" "$bin/busybox" 2>/dev/null || cp "$cache.tmp/sid/usr/bin/busybox" "$bin/busybox"

# The loader path is baked into the binaries, so patch after the cache has its final name.
rm -rf "$cache" && mv "$cache.tmp" "$cache"
sid="$cache/sid"
libdirs="$sid/usr/lib/x86_64-linux-gnu:$sid/lib/x86_64-linux-gnu"
loader="$sid/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
patchelf="$cache/bookworm/usr/bin/patchelf"
for b in runc criu checkpointctl docker-registry; do
  # Static Go binaries have no interpreter and run as they are.
  if "$patchelf" --print-interpreter "$cache/bin/$b" >/dev/null 2>&1; then
    "$patchelf" --set-interpreter "$loader" --force-rpath --set-rpath "$libdirs" "$cache/bin/$b"
  fi
done
"$cache/bin/runc" --version >&2
"$cache/bin/criu" --version >&2
"$cache/bin/containerd" --version >&2
touch "$cache/.complete-v1"
echo "$cache"
