#!/bin/sh
# The README's build command: the one foreman-box binary that installs the host and is also the
# operator's image. Statically linked (glibc, +crt-static) so it runs in an image that holds
# nothing else; built with an explicit --target so proc-macros and build scripts still build for
# the host without crt-static; stripped by the release profile. Prints the binary's path.
set -eu
# main runs as `main || exit 1`, where `set -e` does not apply: every command that can fail is
# checked.

say() { printf 'build.sh: %s\n' "$*" >&2; }
err() { say "error: $*"; exit 1; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || err "need '$1' (command not found)"; }

main() {
    cd "$(dirname "$0")/.."
    cargo="${CARGO:-cargo}"
    need_cmd "$cargo"
    need_cmd rustc
    triple="$(rustc -vV | sed -n 's/^host: //p')"
    case "$triple" in
        *-linux-gnu) ;;
        *) err "static builds are set up for *-linux-gnu hosts; this one is '$triple'" ;;
    esac
    # Only with an explicit --target do these flags stay off the host's proc-macros.
    "$cargo" build --release --locked -p foreman-box --target "$triple" \
        --config "target.$triple.rustflags = [\"-C\", \"target-feature=+crt-static\"]" \
        || err "cargo build failed"
    built="target/$triple/release/foreman-box"
    mkdir -p target/static
    # A copy, not a link: the installed binary must not change when cargo rebuilds.
    cp "$built" target/static/foreman-box.tmp || err "cannot copy $built"
    mv -f target/static/foreman-box.tmp target/static/foreman-box || err "cannot move the binary into place"
    say "built $(pwd)/target/static/foreman-box ($(wc -c < target/static/foreman-box) bytes)"
    printf '%s\n' "$(pwd)/target/static/foreman-box"
}

main "$@" || exit 1
