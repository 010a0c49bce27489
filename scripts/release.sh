#!/bin/sh
# Release artifacts: static foreman-box binaries and the scripts, with their SHA256SUMS, in dist/.
#
#   scripts/release.sh            x86_64, and aarch64 when its cross toolchain is installed
#   DIST=/path scripts/release.sh another output directory
#
# dist/ gets foreman-box-<arch> (statically linked against glibc), install.sh (with the release's
# version as its default), foreman-box-uninstall.sh and SHA256SUMS over all of them. The version
# is the workspace's (Cargo.toml). aarch64 needs `rustup target add aarch64-unknown-linux-gnu` and
# a cross linker (Debian: gcc-aarch64-linux-gnu, which provides aarch64-linux-gnu-gcc).
{
say() {
    printf 'release.sh: %s\n' "$*"
}

err() {
    say "error: $*" >&2
    exit 1
}

need_cmd() {
    if ! command -v "$1" >/dev/null 2>&1; then
        err "need '$1' (command not found)"
    fi
}

ensure() {
    if ! "$@"; then
        err "command failed: $*"
    fi
}

main() {
    cd "$(dirname "$0")/.." || err "cannot enter the workspace"
    need_cmd cargo
    need_cmd sha256sum
    need_cmd sed
    DIST="${DIST:-dist}"
    VERSION="$(cargo pkgid -p foreman-box | sed 's/.*[#@]//')"
    [ -n "$VERSION" ] || err "cannot read the workspace version"
    say "foreman-box $VERSION"
    ensure mkdir -p "$DIST"
    ensure rm -f "$DIST"/foreman-box-* "$DIST/SHA256SUMS" "$DIST/install.sh"

    # This machine's architecture through the project's build command (scripts/build.sh), the
    # other one with a cross toolchain when there is one.
    host="$(uname -m)"
    case "$host" in
        x86_64) other=aarch64 ;;
        aarch64) other=x86_64 ;;
        *) err "release builds run on x86_64 or aarch64, not $host" ;;
    esac
    built="$(scripts/build.sh)" || err "scripts/build.sh failed"
    install_binary "$host" "$built"
    if cross_toolchain "$other-unknown-linux-gnu" "$other-linux-gnu-gcc"; then
        cross_build "$other" "$other-unknown-linux-gnu" "$other-linux-gnu-gcc"
    else
        say "skipping $other: needs 'rustup target add $other-unknown-linux-gnu' and $other-linux-gnu-gcc"
    fi

    # install.sh defaults to the version it was released with.
    sed "s/^DEFAULT_VERSION=.*/DEFAULT_VERSION=\"$VERSION\"/" scripts/install.sh >"$DIST/install.sh" \
        || err "cannot write $DIST/install.sh"
    ensure cp scripts/uninstall.sh "$DIST/foreman-box-uninstall.sh"
    ensure chmod 0755 "$DIST/install.sh" "$DIST/foreman-box-uninstall.sh"
    (cd "$DIST" && sha256sum foreman-box-* install.sh >SHA256SUMS) || err "cannot write $DIST/SHA256SUMS"
    say "wrote $DIST:"
    cat "$DIST/SHA256SUMS"
}

cross_toolchain() {
    command -v rustup >/dev/null 2>&1 || return 1
    rustup target list --installed 2>/dev/null | grep -qx "$1" || return 1
    command -v "$2" >/dev/null 2>&1
}

# Builds the static binary for ARCH (Rust TARGET) with a cross LINKER, as scripts/build.sh does.
cross_build() {
    arch="$1"
    target="$2"
    say "building $target (static, cross-linked with $3)"
    cargo build --release --locked -p foreman-box --target "$target" \
        --config "target.$target.rustflags = [\"-C\", \"target-feature=+crt-static\"]" \
        --config "target.$target.linker = \"$3\"" \
        || err "cargo build for $target failed"
    install_binary "$arch" "target/$target/release/foreman-box"
}

# Copies a built binary to dist/foreman-box-ARCH after checking it is static.
install_binary() {
    arch="$1"
    bin="$2"
    if command -v readelf >/dev/null 2>&1 && readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
        err "$bin is dynamically linked; expected a static binary"
    fi
    ensure cp "$bin" "$DIST/foreman-box-$arch"
    ensure chmod 0755 "$DIST/foreman-box-$arch"
}

main "$@" || exit 1; }
