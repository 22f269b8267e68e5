# Sourced by the fetch scripts: `download DEST SUITE PACKAGE…` fetches Debian packages of SUITE
# with a private sources list and apt state under $work (which the caller creates and removes)
# and unpacks them into DEST/SUITE with dpkg -x. Nothing system-wide is touched.
download() {
  local dest=$1 suite=$2; shift 2
  local d="$work/$suite"
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" >"$d/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$d/lists" -o Dir::State::status=/dev/null -o "Dir::Cache=$d/cache"
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root -qq)
  apt-get "${opts[@]}" update >&2
  (cd "$d/debs" && apt-get "${opts[@]}" download "$@" >&2)
  for deb in "$d"/debs/*.deb; do dpkg -x "$deb" "$dest/$suite"; done
}
