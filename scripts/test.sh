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
    install_cel
    install_pulpcore
    run_shellcheck
    say "building and testing the workspace"
    cargo build --workspace --all-targets --locked
    cargo test --workspace --locked
}

# What the tests need from Debian, one package per line:
#   postgresql         initdb and the server for the throwaway cluster, and the postgres OS user
#   containerd runc    the operator image imported and run for real
#   the shellcheck linter for the scripts; systemd for systemd-analyze verify of the units
#   openssh-client openssl   generated keys and certificates read back
#   debootstrap systemd-container   the booted Debian host of tests/e2e/host.rs
#   python3-venv redis-server       pulpcore's venv and a throwaway Redis for the Pulp scenario
#   curl vagrant       install.sh's download, and `vagrant validate` on vagrant/Vagrantfile
#   nginx-light        the operator's nginx front ends (the edge, pulp-control), run for real
#   puma               Foreman's HTTP server, reading the headers the edge passes (tests/e2e/edge.rs)
#   groff-base         man's formatter renders the man page without a warning
#   zstd               GNU tar reads back the .tar.zst of `backup --archive` and `support-bundle`
#   openjdk-17-jdk-headless ruby   Candlepin's key and stores read by Java 17 (javac, keytool) as
#                      Candlepin 4 reads them; keys read by Ruby's OpenSSL as Katello does
#   ruby-activerecord  Foreman's DATABASE_URL wrapper run as rendered, read back by Rails' reader
#   docker-registry skopeo busybox-static   a real registry to make bundles from, an independent
#                      reader of the bundle's image archive, a static binary for the test images
PACKAGES="
postgresql
containerd
runc
shellcheck
systemd
openssh-client
openssl
debootstrap
systemd-container
python3-venv
redis-server
curl
vagrant
nginx-light
puma
groff-base
zstd
openjdk-17-jdk-headless
ruby
ruby-activerecord
docker-registry
skopeo
busybox-static
"

install_packages() {
    missing=""
    for pkg in $PACKAGES; do
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

# cel-python: evaluates the CRD's x-kubernetes-validations rules (operator/tests/it/sizing.rs),
# with the python3 that runs kubernetes-validate.
CEL_REQUIREMENT="cel-python==0.5.0"

install_cel() {
    python3 -c 'import celpy' >/dev/null 2>&1 && return 0
    say "installing $CEL_REQUIREMENT from PyPI"
    python3 -m pip install --quiet "$CEL_REQUIREMENT" \
        || python3 -m pip install --quiet --break-system-packages "$CEL_REQUIREMENT"
    python3 -c 'import celpy' >/dev/null 2>&1 || err "python3 cannot import celpy after pip install $CEL_REQUIREMENT"
}

# pulpcore and the plugins the operator enables (PULP_ENABLED_PLUGINS) for the Pulp scenario
# (tests/e2e/pulp.rs), in a venv outside the checkout. pulpcore is the version Foreman 3.18's Pulp
# image ships: foremanctl 2.0.0 (= Foreman 3.18) README says "Pulp 3.85", and
# theforeman/pulp-oci-images images/pulp/Containerfile installs it from
# yum.theforeman.org/pulpcore/3.85; 3.85.34 is the newest 3.85.z on PyPI. pulp_file and
# pulp_certguard ship inside pulpcore; pulp-rpm, pulp-container and pulp-smart-proxy are the
# newest PyPI releases that pip resolves against pulpcore 3.85.34 (the image's RPM builds of
# them were not checked). Keep PULPCORE_VERSION in step with tests/src/pulp.rs.
PULPCORE_VERSION=3.85.34
PULP_REQUIREMENTS="pulpcore==$PULPCORE_VERSION pulp-rpm==3.34.0 pulp-container==2.27.14 pulp-smart-proxy==0.6.0"
PULP_VENV=${FOREMAN_BOX_TESTS_PULP_VENV:-/var/cache/foreman-box-tests/pulp-venv}

install_pulpcore() {
    stamp="$PULP_VENV/foreman-box-requirements"
    if [ -x "$PULP_VENV/bin/pulpcore-manager" ] && [ -f "$stamp" ] \
        && [ "$(cat "$stamp")" = "$PULP_REQUIREMENTS" ]; then
        return 0
    fi
    [ -x /usr/bin/python3 ] || err "need /usr/bin/python3 (Debian's python3) for pulpcore's venv"
    say "installing $PULP_REQUIREMENTS from PyPI into $PULP_VENV"
    rm -rf "$PULP_VENV"
    mkdir -p "$(dirname "$PULP_VENV")"
    /usr/bin/python3 -m venv "$PULP_VENV"
    # shellcheck disable=SC2086 # one word per requirement
    "$PULP_VENV/bin/pip" install --quiet --disable-pip-version-check $PULP_REQUIREMENTS \
        || err "pip could not install $PULP_REQUIREMENTS into $PULP_VENV (see above)"
    [ -x "$PULP_VENV/bin/pulpcore-manager" ] || err "pulpcore-manager is missing from $PULP_VENV after pip install"
    # Last: an interrupted install has no stamp and is redone.
    printf '%s\n' "$PULP_REQUIREMENTS" > "$stamp"
}

run_shellcheck() {
    say "shellcheck scripts/*.sh vagrant/*.sh"
    shellcheck --shell=sh scripts/*.sh vagrant/*.sh
    say "vagrant validate vagrant/Vagrantfile"
    (cd vagrant && VAGRANT_CHECKPOINT_DISABLE=1 vagrant validate --ignore-provider)
}

main "$@" || exit 1
