#!/bin/sh
# foreman-box installer: curl -sfL <url>/install.sh | sudo sh -s -- [foreman-box install ARGS]
#
# Downloads the foreman-box binary for this machine and the release's SHA256SUMS, verifies the
# binary's hash, installs it and the uninstall script, then the bash completion and the man page
# the binary generates (where the system keeps them), then runs `foreman-box install` with this
# script's arguments. Everything below is one compound command ending on the last line: a download
# cut short is a syntax error and runs nothing.
#
# Environment:
#   FOREMAN_BOX_VERSION       release to install (default: the one this script was released with)
#   FOREMAN_BOX_DOWNLOAD_URL  base URL of the release downloads; files are fetched from
#                             <url>/v<version>/foreman-box-<arch> and <url>/v<version>/SHA256SUMS.
#                             https only (plain http is accepted for 127.0.0.1 and localhost, for tests)
#   FOREMAN_BOX_BIN_DIR       where to install (default: /usr/local/bin)
#   FOREMAN_BOX_BINARY        install this local binary instead of downloading one (Vagrant boxes)
#   FOREMAN_BOX_BUNDLE        (or --bundle FILE among the arguments) an offline bundle: the binary
#                             comes from it, checked against the bundle's SHA256SUMS, with no
#                             network; `foreman-box install` then verifies the whole bundle
#   FOREMAN_BOX_SKIP_RUN      `true`: install only, do not run `foreman-box install`
#   FOREMAN_BOX_COMPLETION_DIR  where the bash completion goes (default:
#                             /usr/share/bash-completion/completions, and only when it exists)
#   FOREMAN_BOX_MAN_DIR       where the man page foreman-box.1 goes (default:
#                             /usr/local/share/man/man1, and only when it exists)
#                             Either one failing is a warning: the binary is installed all the same.
# Other FOREMAN_BOX_* variables (settings) pass through to `foreman-box install`.
{
DEFAULT_VERSION="0.1.0"
DEFAULT_DOWNLOAD_URL="https://github.com/foreman-box/foreman-box/releases/download"

say() {
    printf 'foreman-box-install: %s\n' "$*"
}

warn() {
    say "warning: $*" >&2
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

# Runs a command that must succeed; the command line is in the message (never pass secrets).
ensure() {
    if ! "$@"; then
        err "command failed: $*"
    fi
}

main() {
    VERSION="${FOREMAN_BOX_VERSION:-$DEFAULT_VERSION}"
    VERSION="${VERSION#v}"
    BASE_URL="${FOREMAN_BOX_DOWNLOAD_URL:-$DEFAULT_DOWNLOAD_URL}"
    BASE_URL="${BASE_URL%/}"
    BIN_DIR="${FOREMAN_BOX_BIN_DIR:-/usr/local/bin}"
    LOCAL_BINARY="${FOREMAN_BOX_BINARY:-}"
    SKIP_RUN="${FOREMAN_BOX_SKIP_RUN:-false}"

    need_cmd uname
    need_cmd mktemp
    need_cmd chmod
    need_cmd mv
    need_cmd rm
    need_cmd id
    choose_privilege

    TMP_DIR="$(mktemp -d 2>/dev/null || mktemp -d -t foreman-box)" || err "cannot create a temporary directory"
    # shellcheck disable=SC2064 # the path is fixed now
    trap "rm -rf '$TMP_DIR'" EXIT
    trap 'exit 130' INT TERM

    bundle_given "$@"
    if [ -n "$LOCAL_BINARY" ]; then
        [ -f "$LOCAL_BINARY" ] || err "FOREMAN_BOX_BINARY=$LOCAL_BINARY is not a file"
        say "installing the local binary $LOCAL_BINARY (FOREMAN_BOX_BINARY)"
        ensure cp "$LOCAL_BINARY" "$TMP_DIR/foreman-box"
    elif [ -n "$BUNDLE" ]; then
        from_bundle
    else
        download_verified
    fi
    ensure chmod 0755 "$TMP_DIR/foreman-box"
    "$TMP_DIR/foreman-box" uninstall --print-script >"$TMP_DIR/foreman-box-uninstall.sh" </dev/null \
        || err "the downloaded binary does not run on this machine ($TMP_DIR/foreman-box uninstall --print-script failed)"
    [ -s "$TMP_DIR/foreman-box-uninstall.sh" ] || err "the binary printed no uninstall script"
    ensure chmod 0755 "$TMP_DIR/foreman-box-uninstall.sh"

    install_files
    install_generated "${FOREMAN_BOX_COMPLETION_DIR:-}" /usr/share/bash-completion/completions \
        foreman-box "the bash completion" completions bash
    install_generated "${FOREMAN_BOX_MAN_DIR:-}" /usr/local/share/man/man1 \
        foreman-box.1 "the man page" man

    if [ "$SKIP_RUN" = true ]; then
        say "installed; not running it (FOREMAN_BOX_SKIP_RUN=true). Next: $BIN_DIR/foreman-box install"
        return 0
    fi
    say "running: foreman-box install $*"
    # Our own variables are not settings: the binary would reject them as unknown keys.
    unset FOREMAN_BOX_VERSION FOREMAN_BOX_DOWNLOAD_URL FOREMAN_BOX_BIN_DIR FOREMAN_BOX_BINARY FOREMAN_BOX_SKIP_RUN \
        FOREMAN_BOX_COMPLETION_DIR FOREMAN_BOX_MAN_DIR
    # shellcheck disable=SC2086 # SUDO is empty or one word
    $SUDO "$BIN_DIR/foreman-box" install "$@" </dev/null
}

# Root, or sudo when it is there (keeping the FOREMAN_BOX_* variables), or a clear message.
choose_privilege() {
    SUDO=""
    [ "$(id -u)" = 0 ] && return 0
    if command -v sudo >/dev/null 2>&1; then
        keep="$(env | sed -n 's/^\(FOREMAN_BOX_[A-Z0-9_]*\)=.*/\1/p' | tr '\n' ',')"
        SUDO="sudo${keep:+ --preserve-env=${keep%,}}"
        say "not running as root: using sudo"
        return 0
    fi
    err "foreman-box installs system services and must run as root, and sudo is not installed
help: run it as root: curl -sfL <url>/install.sh | su -c 'sh -s --'"
}

arch() {
    machine="$(uname -m)"
    case "$machine" in
        x86_64 | amd64) echo x86_64 ;;
        aarch64 | arm64) echo aarch64 ;;
        *) err "no foreman-box release for this architecture ($machine)
help: foreman-box runs on x86_64 and aarch64" ;;
    esac
}

# BUNDLE: the offline bundle given to `foreman-box install`, as --bundle FILE or --bundle=FILE
# (the last one wins, as in the binary), else FOREMAN_BOX_BUNDLE; empty when none.
bundle_given() {
    BUNDLE="${FOREMAN_BOX_BUNDLE:-}"
    while [ $# -gt 0 ]; do
        case "$1" in
            --bundle)
                if [ $# -ge 2 ]; then
                    BUNDLE="$2"
                    shift
                fi
                ;;
            --bundle=*) BUNDLE="${1#--bundle=}" ;;
        esac
        shift
    done
}

# Takes the binary out of BUNDLE into TMP_DIR and checks it against the bundle's SHA256SUMS;
# installs nothing. The whole bundle is verified by the binary before it changes anything.
from_bundle() {
    [ -f "$BUNDLE" ] || err "bundle $BUNDLE is not a file
help: give the file \`foreman-box bundle create\` wrote"
    need_cmd tar
    need_cmd awk
    say "taking foreman-box from the bundle $BUNDLE (no download)"
    tar -xOf "$BUNDLE" SHA256SUMS >"$TMP_DIR/SHA256SUMS" 2>/dev/null \
        || err "$BUNDLE holds no SHA256SUMS: it is not a foreman-box bundle, or it is cut short; nothing was installed"
    tar -xOf "$BUNDLE" foreman-box >"$TMP_DIR/foreman-box" 2>/dev/null \
        || err "$BUNDLE holds no foreman-box binary; nothing was installed"
    expected="$(awk '$2 == "foreman-box" || $2 == "*foreman-box" { print $1; exit }' "$TMP_DIR/SHA256SUMS")"
    [ -n "$expected" ] || err "the SHA256SUMS of $BUNDLE has no entry for foreman-box; nothing was installed"
    actual="$(sha256 "$TMP_DIR/foreman-box")"
    if [ "$actual" != "$expected" ]; then
        err "the foreman-box in $BUNDLE does not match the bundle's SHA256SUMS (expected $expected, got $actual); nothing was installed
help: the bundle is damaged: copy it again, then \`sha256sum\` it against where it was made"
    fi
    say "sha256 verified against the bundle: $actual"
}

# Downloads the binary and SHA256SUMS into TMP_DIR and checks the hash; installs nothing.
download_verified() {
    check_url "$BASE_URL"
    ARCH="$(arch)" || exit 1
    name="foreman-box-$ARCH"
    url="$BASE_URL/v$VERSION"
    say "downloading foreman-box $VERSION for $ARCH from $url"
    download "$url/SHA256SUMS" "$TMP_DIR/SHA256SUMS"
    download "$url/$name" "$TMP_DIR/foreman-box"
    expected="$(awk -v n="$name" '$2 == n || $2 == "*" n { print $1; exit }' "$TMP_DIR/SHA256SUMS")"
    [ -n "$expected" ] || err "$url/SHA256SUMS has no entry for $name; nothing was installed"
    actual="$(sha256 "$TMP_DIR/foreman-box")"
    if [ "$actual" != "$expected" ]; then
        err "the downloaded $name does not match SHA256SUMS (expected $expected, got $actual); nothing was installed
help: retry; if it persists the download is corrupted or tampered with: check $url"
    fi
    say "sha256 verified: $actual"
}

check_url() {
    case "$1" in
        https://*) PROTO='=https' ;;
        http://127.0.0.1:* | http://127.0.0.1/* | http://localhost:* | http://localhost/*)
            say "warning: plain http to $1 (allowed for loopback only, for tests)"
            PROTO='=http,https'
            ;;
        *) err "download URL $1 is not https
help: set FOREMAN_BOX_DOWNLOAD_URL to an https:// URL (http is allowed for 127.0.0.1 and localhost only)" ;;
    esac
}

download() {
    if command -v curl >/dev/null 2>&1; then
        curl --proto "$PROTO" --proto-redir "$PROTO" --tlsv1.2 --fail --silent --show-error --location \
            --retry 3 --connect-timeout 20 --output "$2" "$1" </dev/null \
            || err "download of $1 failed; nothing was installed"
    elif command -v wget >/dev/null 2>&1; then
        wget --quiet --tries=3 --timeout=20 --secure-protocol=TLSv1_2 --output-document="$2" "$1" </dev/null \
            || err "download of $1 failed; nothing was installed"
    else
        err "need curl or wget to download foreman-box"
    fi
}

sha256() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | awk '{ print $1 }'
    elif command -v shasum >/dev/null 2>&1; then
        shasum -a 256 "$1" | awk '{ print $1 }'
    elif command -v openssl >/dev/null 2>&1; then
        openssl dgst -sha256 -r "$1" | awk '{ print $1 }'
    else
        err "need sha256sum, shasum or openssl to verify the download"
    fi
}

# Moves both files into BIN_DIR, each through a temp name in that directory (no half-written file).
install_files() {
    # shellcheck disable=SC2086 # SUDO is empty or one word
    $SUDO mkdir -p "$BIN_DIR" || err "cannot create $BIN_DIR"
    for f in foreman-box foreman-box-uninstall.sh; do
        # shellcheck disable=SC2086
        $SUDO cp "$TMP_DIR/$f" "$BIN_DIR/.$f.new" || err "cannot write $BIN_DIR/.$f.new"
        # shellcheck disable=SC2086
        $SUDO chmod 0755 "$BIN_DIR/.$f.new" || err "cannot chmod $BIN_DIR/.$f.new"
        # shellcheck disable=SC2086
        $SUDO mv -f "$BIN_DIR/.$f.new" "$BIN_DIR/$f" || err "cannot move $f into $BIN_DIR"
    done
    say "installed $BIN_DIR/foreman-box and $BIN_DIR/foreman-box-uninstall.sh"
}

# install_generated ASKED DEFAULT NAME WHAT ARGS...: writes the output of `foreman-box ARGS` to
# DIR/NAME, DIR being ASKED (created if missing) or else DEFAULT (skipped when it does not exist).
# Through a temp name in DIR, so no half-written file; any failure is a warning, not a failed
# install, and leaves no temp file.
install_generated() {
    dir="${1:-$2}"
    asked="$1"
    name="$3"
    what="$4"
    shift 4
    if [ ! -d "$dir" ]; then
        [ -n "$asked" ] || return 0
        # shellcheck disable=SC2086 # SUDO is empty or one word
        if ! $SUDO mkdir -p "$dir"; then
            warn "cannot create $dir: $what is not installed"
            return 0
        fi
    fi
    # Not $TMP_DIR/$name: the completion's name is the binary's.
    out="$TMP_DIR/generated-$name"
    if ! "$TMP_DIR/foreman-box" "$@" >"$out" </dev/null || [ ! -s "$out" ]; then
        warn "foreman-box $* failed or printed nothing: $what is not installed"
        return 0
    fi
    # shellcheck disable=SC2086
    if ! { $SUDO cp "$out" "$dir/.$name.new" && $SUDO chmod 0644 "$dir/.$name.new" \
        && $SUDO mv -f "$dir/.$name.new" "$dir/$name"; }; then
        # shellcheck disable=SC2086
        $SUDO rm -f "$dir/.$name.new"
        warn "cannot write $dir/$name: $what is not installed"
        return 0
    fi
    say "installed $what: $dir/$name"
}

main "$@" || exit 1; }
