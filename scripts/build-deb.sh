#!/usr/bin/env bash
# Build the Debian package: target/debian/v6guard_<version>_<arch>.deb, with plain
# `dpkg-deb --build` (no cargo-deb, no debhelper). What it installs and why: docs/packaging.md.
#
# Usage:   scripts/build-deb.sh
# Prints the path of the .deb as the last line of stdout; progress goes to stderr.
# Also builds target/debian/v6guard-dbgsym_<version>_<arch>.deb: the binary's debug symbols,
# detached (/usr/lib/debug/.build-id/), as Debian's dbgsym packages carry them.
# Needs: cargo, dpkg-deb (package dpkg), dpkg-shlibdeps (package dpkg-dev), objcopy, strip
# and readelf (binutils), gzip.
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

for tool in cargo dpkg-deb dpkg dpkg-shlibdeps objcopy strip readelf gzip; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool not found (cargo: rustup; dpkg-deb: dpkg; dpkg-shlibdeps: dpkg-dev; objcopy, strip, readelf: binutils)"
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
dbg=$work/debian/v6guard-dbgsym
rm -rf "$work"
mkdir -p "$root/DEBIAN" "$dbg/DEBIAN"

log "staging $root"
install -d "$root/usr/sbin" "$root/lib/systemd/system" "$root/etc/v6guard/policies" \
    "$root/usr/share/doc/v6guard/examples/policies" "$root/usr/share/man/man8" \
    "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
    "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/v6guard/schema" \
    "$root/usr/lib/modules-load.d"
# Debug information and the symbol table go to the dbgsym package, found by build ID (as
# Debian's dh_strip does it): the shipped binary is stripped, ~40 MB smaller.
build_id=$(readelf -n "$bin" | awk '/Build ID:/ { print $3; exit }')
[[ ${#build_id} -gt 2 ]] || die "$bin has no GNU build ID"
debug_file=$dbg/usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug
install -d "$(dirname "$debug_file")"
objcopy --only-keep-debug --compress-debug-sections "$bin" "$debug_file"
chmod 0644 "$debug_file"
strip --remove-section=.comment --remove-section=.note --strip-unneeded \
    -o "$root/usr/sbin/v6guard" "$bin"
objcopy --add-gnu-debuglink="$debug_file" "$root/usr/sbin/v6guard"
chmod 0755 "$root/usr/sbin/v6guard"
# The man page and completions come from the binary's own argument definitions.
"$bin" generate man --out-dir "$root/usr/share/man/man8"
gzip -9n "$root"/usr/share/man/man8/*.8
"$bin" generate bash >"$root/usr/share/bash-completion/completions/v6guard"
"$bin" generate zsh >"$root/usr/share/zsh/vendor-completions/_v6guard"
"$bin" generate fish >"$root/usr/share/fish/vendor_completions.d/v6guard.fish"
chmod 0644 "$root"/usr/share/man/man8/*.8.gz \
    "$root/usr/share/bash-completion/completions/v6guard" \
    "$root/usr/share/zsh/vendor-completions/_v6guard" \
    "$root/usr/share/fish/vendor_completions.d/v6guard.fish"
install -m 0644 schema/*.schema.json "$root/usr/share/v6guard/schema/"
install -m 0644 packaging/modules-load/v6guard.conf "$root/usr/lib/modules-load.d/v6guard.conf"
install -D -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/v6guard"
# A native package's Debian changelog is changelog.gz.
gzip -9nc packaging/debian/changelog >"$root/usr/share/doc/v6guard/changelog.gz"
chmod 0644 "$root/usr/share/doc/v6guard/changelog.gz"
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
Depends: $depends, iproute2, kmod
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
md5sums() {
    (cd "$1" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
        xargs -0 md5sum >DEBIAN/md5sums)
    chmod 0644 "$1/DEBIAN/md5sums"
}
md5sums "$root"

# The debug symbols, laid out as Debian's automatic dbgsym packages are.
install -d "$dbg/usr/share/doc"
ln -s v6guard "$dbg/usr/share/doc/v6guard-dbgsym"
dbg_size=$(du -sk --apparent-size --exclude=DEBIAN "$dbg" | cut -f1)
cat >"$dbg/DEBIAN/control" <<CONTROL
Package: v6guard-dbgsym
Source: v6guard
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $dbg_size
Depends: v6guard (= $deb_version)
Section: debug
Priority: optional
Description: debug symbols for v6guard
Build-Ids: $build_id
Auto-Built-Package: debug-symbols
CONTROL
chmod 0644 "$dbg/DEBIAN/control"
md5sums "$dbg"

deb=$out/v6guard_${deb_version}_${arch}.deb
dbg_deb=$out/v6guard-dbgsym_${deb_version}_${arch}.deb
find "$out" -maxdepth 1 \( -name "v6guard_*_${arch}.deb" -o -name "v6guard-dbgsym_*_${arch}.deb" \) \
    ! -path "$deb" ! -path "$dbg_deb" -print -delete |
    sed 's/^/[build-deb] removed older package /' >&2
log "dpkg-deb --build -> $deb (and $dbg_deb)"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
dpkg-deb --root-owner-group -Zxz --build "$dbg" "$dbg_deb" >&2
rm -rf "$work"
printf '%s\n' "$deb"
