#!/bin/sh
# The README's test command: installs what the tests need on a fresh Debian machine, then runs
# the whole suite (unit tests, end-to-end scenarios against a loopback mirror and a real
# PostgreSQL server, kubernetes-validate on rendered manifests, shellcheck on the scripts).
set -eu

say() { printf 'test.sh: %s\n' "$*"; }
err() { say "error: $*" >&2; exit 1; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || err "need '$1' (command not found)"; }

main() {
    cd "$(dirname "$0")/.."
    need_cmd cargo
    install_packages
    install_validator
    run_shellcheck
    say "building and testing the workspace"
    cargo build --workspace --all-targets --locked
    cargo test --workspace --locked
}

# The PostgreSQL server (initdb for the throwaway cluster, and the postgres OS user), containerd
# and runc, shellcheck, systemd-analyze, and ssh-keygen and openssl to check generated keys;
# nginx-light and curl run the operator's Pulp mTLS front end config (operator tests).
install_packages() {
    missing=""
    for pkg in postgresql containerd runc shellcheck systemd openssh-client openssl nginx-light curl; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing="$missing $pkg"
        fi
    done
    [ -z "$missing" ] && return 0
    command -v apt-get >/dev/null 2>&1 || err "missing packages:$missing (install them; this script knows apt-get only)"
    say "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -q --no-install-recommends $missing
}

install_validator() {
    command -v kubernetes-validate >/dev/null 2>&1 && return 0
    need_cmd python3
    say "installing kubernetes-validate from PyPI"
    python3 -m pip install --quiet kubernetes-validate \
        || python3 -m pip install --quiet --break-system-packages kubernetes-validate
    command -v kubernetes-validate >/dev/null 2>&1 || err "kubernetes-validate is not on PATH after pip install"
}

run_shellcheck() {
    say "shellcheck scripts/*.sh"
    shellcheck scripts/*.sh
}

main "$@" || exit 1
