#!/bin/sh
# The Vagrant boxes' end-to-end check, as a user would see it: Foreman answers on
# https://<fqdn> with every service ok, the admin logs in with the stored password, Katello and a
# Remote Execution proxy are there when enabled, `foreman-box status --output json` says Ready. Then the
# uninstall script removes k3s and keeps the data, and a second install converges on that data.
#
# Environment: FOREMAN_BOX_BINARY (the binary to reinstall, as the first install did),
# SMOKE_TIMEOUT (seconds to wait for Foreman to be Ready, default 3600).
{
NAMESPACE=foreman
BIN_DIR=/usr/local/bin
DATABASES='foreman candlepin pulp'

say() {
    printf 'smoke: %s\n' "$*"
}

err() {
    say "FAILED: $*" >&2
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
    [ "$(id -u)" = 0 ] || err "run as root"
    for c in curl grep sed base64 mktemp hostname runuser psql; do
        need_cmd "$c"
    done
    TIMEOUT="${SMOKE_TIMEOUT:-3600}"
    # Not a setting: foreman-box itself would reject it as an unknown FOREMAN_BOX_* variable.
    REINSTALL_BINARY="${FOREMAN_BOX_BINARY:-}"
    unset FOREMAN_BOX_BINARY
    FQDN="$(hostname -f)"
    TMP_DIR="$(mktemp -d)" || err "cannot create a temporary directory"
    # shellcheck disable=SC2064 # the path is fixed now
    trap "rm -rf '$TMP_DIR'" EXIT

    say "first install on $FQDN"
    check_foreman

    first_admin="$(admin_password_b64)"
    [ -n "$first_admin" ] || err "Secret $NAMESPACE/foreman-generated has no admin-password"

    say "uninstall (keeping the data)"
    ensure "$BIN_DIR/foreman-box-uninstall.sh"
    check_k3s_gone
    check_data_kept

    say "second install, on the kept data"
    [ -n "$REINSTALL_BINARY" ] || err "FOREMAN_BOX_BINARY is not set: which binary to reinstall?"
    FOREMAN_BOX_BINARY="$REINSTALL_BINARY" sh "$(dirname "$0")/../scripts/install.sh" \
        || err "the second install failed"
    check_foreman
    [ "$(admin_password_b64)" = "$first_admin" ] \
        || err "the second install made a new admin password instead of the kept one"
    say "ok: the second install brought back the generated Secrets from /etc/foreman-box/secrets"
    say "all checks passed"
}

kubectl() {
    /usr/local/bin/k3s kubectl "$@"
}

# The admin password as the cluster holds it (base64, never printed).
admin_password_b64() {
    kubectl -n "$NAMESPACE" get secret foreman-generated -o jsonpath='{.data.admin-password}'
}

# Everything a user checks on a running Foreman.
check_foreman() {
    wait_ready
    ca="$TMP_DIR/ca.crt"
    kubectl -n "$NAMESPACE" get secret foreman-tls -o jsonpath='{.data.ca\.crt}' | base64 -d >"$ca" \
        || err "cannot read the CA from Secret $NAMESPACE/foreman-tls"
    write_credentials

    ping="$(api /api/v2/ping)" || err "GET https://$FQDN/api/v2/ping failed: $ping"
    if printf '%s' "$ping" | grep -Eqi '"status" *: *"FAIL"|"active" *: *false'; then
        err "Foreman's ping reports a failed service: $ping"
    fi
    printf '%s' "$ping" | grep -Eq '"active" *: *true' || err "Foreman's ping has no active database: $ping"
    say "ok: /api/v2/ping, every service ok"

    user="$(api /api/v2/users/current)" || err "the admin cannot log in with the stored password: $user"
    printf '%s' "$user" | grep -Eq '"login" *: *"admin"' || err "logged in, but not as admin: $user"
    say "ok: admin logs in with the password from Secret $NAMESPACE/foreman-generated"

    if [ "$(kubectl -n "$NAMESPACE" get foreman foreman -o jsonpath='{.spec.plugins.katello}')" = true ]; then
        kping="$(api /katello/api/ping)" || err "GET /katello/api/ping failed: $kping"
        printf '%s' "$kping" | grep -Eq '^\{"status" *: *"ok"' || err "Katello's ping is not ok: $kping"
        say "ok: /katello/api/ping"
    fi
    if [ "$(kubectl -n "$NAMESPACE" get foreman foreman -o jsonpath='{.spec.plugins.remote_execution}')" = true ]; then
        proxies="$(api '/api/v2/smart_proxies?search=feature%3D%22Remote%20Execution%22')" \
            || err "listing smart proxies failed: $proxies"
        printf '%s' "$proxies" | grep -Eq '"subtotal" *: *[1-9]' \
            || err "no smart proxy with the Remote Execution feature: $proxies"
        say "ok: a smart proxy with Remote Execution is registered"
    fi

    status="$("$BIN_DIR/foreman-box" status --output json)" || err "foreman-box status --output json failed"
    printf '%s' "$status" | grep -Eq '"(ready|Ready)" *: *(true|"True")' \
        || err "foreman-box status --output json does not say Ready: $status"
    say "ok: foreman-box status --output json says Ready"
}

wait_ready() {
    say "waiting up to ${TIMEOUT}s for Foreman $NAMESPACE/foreman to be Ready"
    waited=0
    while :; do
        ready="$(kubectl -n "$NAMESPACE" get foreman foreman \
            -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)"
        [ "$ready" = True ] && return 0
        [ "$waited" -ge "$TIMEOUT" ] && break
        sleep 10
        waited=$((waited + 10))
    done
    kubectl -n "$NAMESPACE" get foreman,pods 2>&1 || true
    err "Foreman was not Ready after ${TIMEOUT}s"
}

# The admin's credentials into a 0600 curl config: the password never reaches argv.
write_credentials() {
    password="$(kubectl -n "$NAMESPACE" get secret foreman-generated -o jsonpath='{.data.admin-password}' | base64 -d)"
    [ -n "$password" ] || err "Secret $NAMESPACE/foreman-generated has no admin-password"
    (
        umask 077
        printf 'user = "admin:%s"\n' "$(printf '%s' "$password" | sed 's/["\\]/\\&/g')" >"$TMP_DIR/curl.conf"
    ) || err "cannot write $TMP_DIR/curl.conf"
    password=""
}

api() {
    curl --silent --show-error --fail --max-time 60 --proto '=https' --tlsv1.2 \
        --cacert "$TMP_DIR/ca.crt" --config "$TMP_DIR/curl.conf" \
        -H 'Accept: application/json' "https://$FQDN$1" 2>&1
}

check_k3s_gone() {
    for p in /usr/local/bin/k3s /etc/systemd/system/k3s.service /var/lib/rancher/k3s /etc/rancher/k3s \
        /var/lib/kubelet /run/k3s; do
        [ ! -e "$p" ] || err "$p is still there after uninstall"
    done
    ! systemctl is-active --quiet k3s || err "k3s is still running"
    ! ip link show cni0 >/dev/null 2>&1 || err "interface cni0 is still there"
    if iptables-save 2>/dev/null | grep -q 'KUBE-'; then
        err "k3s's iptables rules are still there"
    fi
    [ ! -e "$BIN_DIR/foreman-box" ] || err "$BIN_DIR/foreman-box is still there"
    say "ok: k3s and foreman-box are gone"
}

check_data_kept() {
    for p in /etc/foreman-box/secrets/postgres-foreman /etc/foreman-box/secrets/foreman-generated.yaml \
        /etc/foreman-box/secrets/foreman-tls.yaml /var/lib/pulp "$BIN_DIR/foreman-box-uninstall.sh"; do
        [ -e "$p" ] || err "$p was removed; it must be kept"
    done
    for db in $DATABASES; do
        found="$(cd / && runuser -u postgres -- psql -X -A -t -c "SELECT 1 FROM pg_database WHERE datname = '$db'")"
        [ "$found" = 1 ] || err "database $db was dropped; it must be kept"
    done
    say "ok: databases, /var/lib/pulp and /etc/foreman-box are kept"
}

main "$@" || exit 1; }
