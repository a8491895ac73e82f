#!/usr/bin/env bash
# Build the Debian package: target/debian/v6guard_<version>_<arch>.deb, with plain
# `dpkg-deb --build` (no cargo-deb, no debhelper). What it installs and why: docs/packaging.md.
#
# Usage:   scripts/build-deb.sh
# Prints the path of the .deb as the last line of stdout; progress goes to stderr.
# Needs: cargo, dpkg-deb (package dpkg), dpkg-shlibdeps (package dpkg-dev), strip (binutils).
# Environment: CARGO_TARGET_DIR (default target/), SOURCE_DATE_EPOCH (default: the last
# commit's time, for reproducible timestamps), V6G_DEB_MAINTAINER ("Name <email>").
#
# Idempotent: the staging tree is rebuilt from scratch every run and older v6guard .debs
# for this architecture in target/debian are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
umask 022

log() { printf '[build-deb] %s\n' "$*" >&2; }
die() { printf '[build-deb] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in cargo dpkg-deb dpkg dpkg-shlibdeps strip; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found (cargo: rustup; dpkg-deb: dpkg; dpkg-shlibdeps: dpkg-dev; strip: binutils)"
done

# The version of [package] in Cargo.toml. Debian sorts `~` before anything, as semver sorts a
# pre-release (1.0.0-rc.1 < 1.0.0), so `-` becomes `~`.
version=$(awk '/^\[/ { in_pkg = ($0 == "[package]") }
               in_pkg && /^version[ \t]*=/ { sub(/^[^"]*"/, ""); sub(/".*$/, ""); print; exit }' Cargo.toml)
[[ -n "$version" ]] || die "no version in Cargo.toml's [package] section"
deb_version=${version//-/\~}
arch=$(dpkg --print-architecture)
maintainer=${V6G_DEB_MAINTAINER:-v6guard maintainers <maintainers@v6guard.invalid>}
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

target_dir=${CARGO_TARGET_DIR:-target}
[[ "$target_dir" == /* ]] || target_dir=$repo/$target_dir

log "cargo build --release --locked (v6guard $version)"
cargo build --release --locked >&2
bin=$target_dir/release/v6guard
[[ -x "$bin" ]] || die "$bin was not built"
built=$("$bin" --version)
[[ "$built" == "v6guard $version" ]] || die "$bin --version says '$built', Cargo.toml says $version"

unit=packaging/systemd/v6guard.service
grep -qx 'ExecStart=/usr/sbin/v6guard daemon' "$unit" ||
    die "$unit must say ExecStart=/usr/sbin/v6guard daemon (the package installs /usr/sbin/v6guard)"

# Staging follows the debian/ layout so that dpkg-shlibdeps finds the binary where it expects.
out=$target_dir/debian
work=$out/stage
root=$work/debian/v6guard
rm -rf "$work"
mkdir -p "$root/DEBIAN"

log "staging $root"
install -d "$root/usr/sbin" "$root/lib/systemd/system" "$root/etc/v6guard/policies" \
    "$root/usr/share/doc/v6guard/examples/policies"
# Debug information (the release profile keeps line tables) is not shipped: ~40 MB of the
# binary's size. Symbols stay, so backtraces still name functions.
strip --strip-debug -o "$root/usr/sbin/v6guard" "$bin"
chmod 0755 "$root/usr/sbin/v6guard"
install -m 0644 "$unit" "$root/lib/systemd/system/v6guard.service"
install -m 0644 packaging/debian/v6guard.yaml "$root/etc/v6guard/v6guard.yaml"
# Documentation uncompressed, flat: the unit's Documentation= names
# /usr/share/doc/v6guard/daemon.md.
install -m 0644 README.md docs/*.md packaging/debian/copyright "$root/usr/share/doc/v6guard/"
install -m 0644 policies/* "$root/usr/share/doc/v6guard/examples/policies/"

install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm \
    "$root/DEBIAN/"
printf '/etc/v6guard/v6guard.yaml\n' >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

# Shared libraries, with the minimum versions the binary's symbols need (libc6, libgcc-s1,
# libmnl0, libnftnl11 today), as dpkg-shlibdeps computes them for Debian's own packages.
printf 'Source: v6guard\n\nPackage: v6guard\nArchitecture: any\n' >"$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O debian/v6guard/usr/sbin/v6guard)
depends=${shlibs#shlibs:Depends=}
[[ "$shlibs" == shlibs:Depends=* && -n "$depends" ]] || die "dpkg-shlibdeps said: $shlibs"
for lib in libc6 libmnl0 libnftnl11; do
    [[ "$depends" == *"$lib "* || "$depends" == *"$lib," || "$depends" == *"$lib" ]] ||
        die "dependencies '$depends' lack $lib: is the binary linked as expected? (ldd $bin)"
done
installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: v6guard
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends, iproute2
Recommends: docker.io | docker-ce
Suggests: nftables
Section: net
Priority: optional
Description: IPv6 firewall for Docker: the rules Docker gives IPv4
 Docker firewalls its containers' IPv4 (inter-container communication off,
 isolation between networks, only published ports reachable) and leaves their
 IPv6 open. v6guard gives IPv6 the same rules, as one nftables table
 (table ip6 v6guard) that it replaces atomically.
 .
 The v6guard command renders the ruleset as an nft script (a dry run),
 applies it, audits what the outside world can reach, and checks the
 configuration and policy files in /etc/v6guard. As a service
 (v6guard.service, not enabled on installation) it follows Docker's events
 and restores the table when something else changes it. It fails closed:
 when it stops, or the package is removed, the rules stay in place.
EOF
chmod 0644 "$root/DEBIAN/control"

deb=$out/v6guard_${deb_version}_${arch}.deb
find "$out" -maxdepth 1 -name "v6guard_*_${arch}.deb" ! -path "$deb" -print -delete |
    sed 's/^/[build-deb] removed older package /' >&2
log "dpkg-deb --build -> $deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
rm -rf "$work"
printf '%s\n' "$deb"
