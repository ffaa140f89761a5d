#!/usr/bin/env bash
# Builds arcbox-core's own loader (../shared/arcbox-core-loader: MachinePersistence as a CLI), the
# judge of the differential tests, into a cache outside the repository, and prints the binary's path.
# Rebuilds only when the loader's sources changed. Installs the Debian crate packages it needs when
# they are missing and this runs as root. Only the tests need it: `npm install` never does.
#
#   scripts/build-arcbox-core-loader.sh [SOURCE_DIR]
#   ARCBOX_CORE_LOADER_CACHE   cache directory (default ${XDG_CACHE_HOME:-~/.cache}/arcbox-controller)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$(cd "${1:-$repo/../shared/arcbox-core-loader}" && pwd)"
cache="${ARCBOX_CORE_LOADER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/arcbox-controller}"
out="$cache/arcbox-core-loader"
stamp="$(cd "$src" && find . -type f ! -path './target/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"

if [ -x "$out/arcbox-core-loader" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  echo "$out/arcbox-core-loader"
  exit 0
fi

# The crates, as the loader's README lists them; Debian packages them for offline builds.
crates=(librust-toml-edit-dev librust-serde-dev librust-serde-derive-dev librust-chrono-dev
  librust-tempfile-dev librust-uuid-dev librust-thiserror-dev)
missing=()
for p in "${crates[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "build-arcbox-core-loader: missing Debian packages: ${missing[*]} (install them as root)" >&2
    exit 1
  fi
  echo "build-arcbox-core-loader: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -x "$HOME/.cargo/bin/cargo" ] && PATH="$PATH:$HOME/.cargo/bin"
command -v cargo >/dev/null 2>&1 || { echo "build-arcbox-core-loader: cargo is not installed" >&2; exit 1; }

# shared/ is read-only: build from a writable copy.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/loader"
chmod -R u+w "$work/loader"
(cd "$work/loader" && RUSTFLAGS="-A warnings" cargo build --release --offline --quiet) >&2
mkdir -p "$out"
install -m 0755 "$work/loader/target/release/arcbox-core-loader" "$out/arcbox-core-loader.new"
mv "$out/arcbox-core-loader.new" "$out/arcbox-core-loader"
echo "$stamp" > "$out/stamp"
echo "$out/arcbox-core-loader"
