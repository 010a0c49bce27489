#!/bin/sh
# foreman-box uninstall: removes k3s (as k3s's own k3s-killall.sh and k3s-uninstall.sh do) and
# foreman-box's files, the managed pg_hba.conf block and the firewalld entries. Keeps, unless
# --purge, the PostgreSQL databases and roles, the Pulp content and /etc/foreman-box (configuration
# and the stored passwords and generated Secrets a later install needs to reuse the kept databases).
# With --purge the PostgreSQL server also goes back to how it was before the first install, as
# /etc/foreman-box/postgres-original.toml (written once by the installer) says: a server
# foreman-box installed from packages is removed with its data; a server it found gets back the
# settings it tuned (postgresql.auto.conf) and is restarted (local) or reloaded (external).
#
# docs/uninstall.md has the table of what each mode leaves.
#
# Usage: foreman-box-uninstall.sh [--purge] [--root DIR]
#        foreman-box uninstall [--purge] [--root DIR]     (the same script, embedded in the binary)
#
# Standalone: works when the foreman-box binary is gone. Safe to run twice. Reads the settings it
# needs (postgres.*, storage.pulp_dir, k3s.*_cidr) from /etc/foreman-box/config.toml (or
# FOREMAN_BOX_CONFIG) and the FOREMAN_BOX_* variables, as the installer does. With --root (or
# FOREMAN_BOX_ROOT) every host path is resolved under DIR and no service, process, network
# interface or firewall rule of this machine is touched. The bash completion and the man page
# install.sh wrote are removed from FOREMAN_BOX_COMPLETION_DIR and FOREMAN_BOX_MAN_DIR, as
# install.sh chose them (default /usr/share/bash-completion/completions and
# /usr/local/share/man/man1).
{
# shellcheck disable=SC2016 # the marker line as the installer writes it, backquotes and all
HBA_BEGIN='# BEGIN foreman-box: managed block, replaced on every `foreman-box install`'
HBA_END='# END foreman-box'
DATABASES='foreman candlepin pulp'
ADMIN_ROLE='foreman_box_admin'
# What the installer found before its first change (installer/src/steps/postgres/original.rs).
PG_RECORD='/etc/foreman-box/postgres-original.toml'
# The settings it tunes (installer/src/steps/postgres/settings.rs TUNED).
PG_TUNED='listen_addresses max_connections shared_buffers'
K3S_LINKS='kubectl crictl ctr'
# What k3s-uninstall.sh removes (k3s-io/k3s install.sh, create_uninstall and create_killall).
K3S_DIRS='/etc/rancher/k3s /run/k3s /run/flannel /var/lib/rancher/k3s /var/lib/kubelet /var/lib/cni'
# What k3s-killall.sh unmounts (and only that: other mount points below these directories stay).
K3S_MOUNT_PREFIXES='/run/k3s /var/lib/kubelet/pods /var/lib/kubelet/plugins /run/netns/cni-'
K3S_INTERFACES='cni0 flannel.1 flannel-v6.1 kube-ipvs0 flannel-wg flannel-wg-v6'

say() {
    printf 'foreman-box-uninstall: %s\n' "$*"
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

usage() {
    cat <<'EOF'
Usage: foreman-box-uninstall.sh [--purge] [--root DIR]

Removes k3s, foreman-box and what it configured. Keeps the PostgreSQL databases and roles,
the Pulp content and /etc/foreman-box unless --purge is given.

  --purge      also drop the databases foreman, candlepin and pulp and their roles, put the
               PostgreSQL server back as it was before the first install (a server foreman-box
               installed is removed with its data; one it found gets its settings back), and
               remove the Pulp content directory, /etc/foreman-box and the run logs
  --root DIR   resolve every path under DIR and touch no service (tests); env FOREMAN_BOX_ROOT
EOF
}

main() {
    PURGE=false
    ROOT="${FOREMAN_BOX_ROOT:-/}"
    while [ $# -gt 0 ]; do
        case "$1" in
            --purge) PURGE=true ;;
            --root)
                [ $# -ge 2 ] || err "--root needs a directory"
                ROOT="$2"
                shift
                ;;
            --root=*) ROOT="${1#--root=}" ;;
            -h | --help)
                usage
                return 0
                ;;
            *) err "unknown argument '$1'
help: foreman-box-uninstall.sh [--purge] [--root DIR]" ;;
        esac
        shift
    done

    [ "$(id -u)" = 0 ] || err "must run as root
help: sudo $0 $*"
    for c in awk sed sort rm rmdir mkdir mktemp cat grep; do
        need_cmd "$c"
    done
    [ -d "$ROOT" ] || err "--root $ROOT is not a directory"
    ROOT="$(cd "$ROOT" && pwd -P)" || err "cannot resolve $ROOT"
    if [ "$ROOT" = / ]; then
        R=""
        REAL=true
    else
        R="$ROOT"
        REAL=false
        say "host root $ROOT: only files under it change; no service, process or firewall rule is touched"
    fi

    TMP_DIR="$(mktemp -d)" || err "cannot create a temporary directory"
    # shellcheck disable=SC2064 # the path is fixed now
    trap "rm -rf '$TMP_DIR'" EXIT
    trap 'exit 130' INT TERM

    read_settings
    remove_k3s
    remove_foreman_box_files
    clean_postgres
    clean_firewall
    if [ "$PURGE" = true ]; then
        purge_kept_data
        remove_uninstaller
        say "done: foreman-box and everything it kept are removed"
    else
        report_kept
    fi
}

# --- settings -------------------------------------------------------------------------------

# The value of KEY: from its FOREMAN_BOX_* variable, else config.toml, else DEFAULT.
setting() {
    key="$1"
    default="$2"
    var="FOREMAN_BOX_$(printf '%s' "$key" | tr 'a-z.' 'A-Z_')"
    if value="$(printenv "$var")"; then
        printf '%s\n' "$value"
        return 0
    fi
    if [ -f "$CONFIG" ]; then
        value="$(toml_get "$key" <"$CONFIG")"
        if [ -n "$value" ]; then
            printf '%s\n' "$value"
            return 0
        fi
    fi
    printf '%s\n' "$default"
}

# Reads a key (`section.key` or a top-level dotted key) from the simple TOML subset foreman-box's
# config uses: [section] headers and `key = "string" | 'string' | bare` lines.
toml_get() {
    awk -v want="$1" '
        function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
        /^[ \t]*(#|$)/ { next }
        /^[ \t]*\[/ { s = $0; sub(/^[ \t]*\[/, "", s); sub(/\].*$/, "", s); section = trim(s); next }
        index($0, "=") > 0 {
            k = trim(substr($0, 1, index($0, "=") - 1))
            v = trim(substr($0, index($0, "=") + 1))
            full = (section == "" ? k : section "." k)
            if (full != want) next
            q = substr(v, 1, 1)
            if (q == "\"" || q == "\047") {
                v = substr(v, 2); v = substr(v, 1, index(v, q) - 1)
            } else {
                sub(/[ \t]*#.*$/, "", v)
            }
            print v
            exit
        }'
}

read_settings() {
    CONFIG="${FOREMAN_BOX_CONFIG:-$R/etc/foreman-box/config.toml}"
    PG_MODE="$(setting postgres.mode local)"
    PG_ADMIN_URL="$(setting postgres.admin_url "")"
    PG_PASSWORD_FILE="$(setting postgres.admin_password_file "")"
    PG_MANAGE="$(setting postgres.manage_server "")"
    PULP_DIR="$(setting storage.pulp_dir /var/lib/pulp)"
    CLUSTER_CIDR="$(setting k3s.cluster_cidr 10.42.0.0/16)"
    SERVICE_CIDR="$(setting k3s.service_cidr 10.43.0.0/16)"
    BIN_DIR="${FOREMAN_BOX_BIN_DIR:-/usr/local/bin}"
    # Where install.sh put the bash completion and the man page (its defaults and variables).
    COMPLETION_DIR="${FOREMAN_BOX_COMPLETION_DIR:-/usr/share/bash-completion/completions}"
    MAN_DIR="${FOREMAN_BOX_MAN_DIR:-/usr/local/share/man/man1}"
    case "$PG_MODE" in
        local | external) ;;
        *) err "postgres.mode is '$PG_MODE' (in $CONFIG or FOREMAN_BOX_POSTGRES_MODE)
help: it must be local or external" ;;
    esac
    if [ "$PG_MODE" = external ] && [ -z "$PG_ADMIN_URL" ]; then
        warn "postgres.mode is external but postgres.admin_url is not set: the database server is left alone"
    fi
    PG_ORIGIN=""
    if [ -f "$R$PG_RECORD" ]; then
        PG_ORIGIN="$(toml_get server <"$R$PG_RECORD")"
        case "$PG_ORIGIN" in
            installed | found) ;;
            *) err "$R$PG_RECORD says server = '$PG_ORIGIN'
help: it must be installed or found; it is written by foreman-box install, do not edit it" ;;
        esac
    fi
}

# --- k3s ------------------------------------------------------------------------------------

remove_k3s() {
    if [ "$REAL" = true ]; then
        stop_k3s
        kill_shims
    fi
    for prefix in $K3S_MOUNT_PREFIXES; do
        unmount_under "$R$prefix"
    done
    if [ "$REAL" = true ]; then
        remove_network
    fi
    for f in /etc/systemd/system/k3s.service /etc/systemd/system/k3s.service.env \
        /etc/systemd/system/multi-user.target.wants/k3s.service; do
        remove_file "$R$f"
    done
    for link in $K3S_LINKS; do
        if [ -L "$R/usr/local/bin/$link" ]; then
            ensure rm -f "$R/usr/local/bin/$link"
        fi
    done
    remove_file "$R/usr/local/bin/k3s"
    for d in $K3S_DIRS; do
        remove_tree "$R$d" || exit 1
    done
    rmdir "$R/etc/rancher" "$R/var/lib/rancher" 2>/dev/null || true
    if [ "$REAL" = true ] && command -v systemctl >/dev/null 2>&1; then
        systemctl reset-failed k3s.service >/dev/null 2>&1 || true
        systemctl daemon-reload || warn "systemctl daemon-reload failed"
    fi
    say "k3s removed"
}

stop_k3s() {
    command -v systemctl >/dev/null 2>&1 || return 0
    if [ -f /etc/systemd/system/k3s.service ] || systemctl is-active --quiet k3s.service; then
        say "stopping k3s"
        systemctl stop k3s.service || warn "systemctl stop k3s failed"
        systemctl disable k3s.service >/dev/null 2>&1 || true
    fi
}

# The containerd shims k3s started (they outlive the service: KillMode=process), and their children.
kill_shims() {
    command -v ps >/dev/null 2>&1 || return 0
    shims="$(ps -e -o pid= -o args= | awk '$2 ~ /\/var\/lib\/rancher\/k3s\/data\/[^\/]*\/bin\/containerd-shim/ { print $1 }')"
    [ -n "$shims" ] || return 0
    say "killing the containerd shims and their containers"
    # shellcheck disable=SC2086 # one pid per word
    pids="$(process_tree $shims)"
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
}

process_tree() (
    for pid in "$@"; do
        echo "$pid"
        # shellcheck disable=SC2046 # one pid per word
        process_tree $(ps -e -o ppid= -o pid= | awk -v p="$pid" '$1 == p { print $2 }')
    done
)

# Mount points from /proc/self/mountinfo (octal escapes such as \040 decoded), deepest first.
mount_points() {
    awk '{ print $5 }' /proc/self/mountinfo | while IFS= read -r m; do
        printf '%b\n' "$m"
    done | sort -r
}

# Unmounts every mount point whose path starts with PREFIX (k3s-killall.sh's rule), then removes
# the emptied mount point.
unmount_under() {
    prefix="$1"
    mount_points | while IFS= read -r m; do
        case "$m" in
            "$prefix"*)
                say "unmounting $m"
                umount -f "$m" 2>/dev/null || umount -l "$m" || warn "cannot unmount $m"
                ;;
        esac
    done
}

remove_network() {
    if command -v ip >/dev/null 2>&1; then
        ip netns show 2>/dev/null | awk '$1 ~ /^cni-/ { print $1 }' | while read -r ns; do
            ip netns delete "$ns" || warn "cannot delete network namespace $ns"
        done
        ip -o link show 2>/dev/null | awk '/ master cni0 / { sub(/:$/, "", $2); sub(/@.*/, "", $2); print $2 }' \
            | while read -r iface; do
                ip link delete "$iface" || warn "cannot delete interface $iface"
            done
        for iface in $K3S_INTERFACES; do
            if ip link show dev "$iface" >/dev/null 2>&1; then
                ip link delete "$iface" || warn "cannot delete interface $iface"
            fi
        done
    fi
    for t in iptables ip6tables; do
        if ! command -v "$t-save" >/dev/null 2>&1 || ! command -v "$t-restore" >/dev/null 2>&1; then
            continue
        fi
        # Saved to a file first: a failed save must never be restored as an empty rule set.
        "$t-save" >"$TMP_DIR/$t.rules" 2>/dev/null || {
            warn "$t-save failed: k3s's $t rules stay"
            continue
        }
        grep -q -i -e 'KUBE-' -e 'CNI-' -e 'flannel' "$TMP_DIR/$t.rules" || continue
        grep -v -e 'KUBE-' -e 'CNI-' "$TMP_DIR/$t.rules" | grep -iv flannel >"$TMP_DIR/$t.kept"
        say "removing k3s's $t rules (KUBE-, CNI-, flannel)"
        "$t-restore" <"$TMP_DIR/$t.kept" || warn "$t-restore failed: k3s's $t rules stay"
    done
}

# --- removal that never crosses a mount point it did not make ---------------------------------

remove_file() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        ensure rm -f "$1"
    fi
}

# Removes DIR, except below mount points: those (and the directories leading to them) stay.
remove_tree() (
    dir="$1"
    [ -e "$dir" ] || [ -L "$dir" ] || return 0
    if [ -L "$dir" ] || [ ! -d "$dir" ]; then
        ensure rm -f "$dir"
        return 0
    fi
    mounts="$(mount_points | awk -v d="$dir" 'index($0, d "/") == 1 || $0 == d')"
    if [ -z "$mounts" ]; then
        ensure rm -rf "$dir"
        return 0
    fi
    if printf '%s\n' "$mounts" | grep -qxF "$dir"; then
        warn "keeping $dir: it is a mount point foreman-box did not make"
        return 0
    fi
    for entry in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        remove_tree "$entry" || exit 1
    done
    rmdir "$dir" 2>/dev/null || true
)

remove_foreman_box_files() {
    remove_tree "$R/var/lib/foreman-box" || exit 1
    # The lock file of one-run-at-a-time; /run itself stays (rmdir only succeeds under --root).
    remove_file "$R/run/foreman-box.lock"
    rmdir "$R/run" 2>/dev/null || true
    remove_file "$R$BIN_DIR/foreman-box"
    remove_file "$R$COMPLETION_DIR/foreman-box"
    remove_file "$R$MAN_DIR/foreman-box.1"
    say "foreman-box's files removed"
}

remove_uninstaller() {
    remove_file "$R$BIN_DIR/foreman-box-uninstall.sh"
}

# --- PostgreSQL -----------------------------------------------------------------------------

clean_postgres() {
    case "$PG_MODE" in
        local)
            if [ "$REAL" != true ]; then
                say "postgres.mode is local: under --root the machine's PostgreSQL server is left alone"
                return 0
            fi
            if ! command -v runuser >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1 \
                || ! local_psql -c 'SELECT 1' >/dev/null 2>&1; then
                if [ "$PURGE" = true ] && [ "$PG_ORIGIN" = installed ]; then
                    remove_local_server
                    return 0
                fi
                if [ "$PURGE" = true ]; then
                    err "the local PostgreSQL server does not answer, so the databases cannot be dropped; nothing kept was removed
help: start it (systemctl start postgresql) and run this again"
                fi
                warn "the local PostgreSQL server does not answer: the foreman-box block in its pg_hba.conf stays"
                return 0
            fi
            if [ "$PURGE" = true ] && [ "$PG_ORIGIN" = installed ]; then
                remove_local_server
                return 0
            fi
            PSQL=local_psql
            MANAGED=true
            ;;
        external)
            [ -n "$PG_ADMIN_URL" ] || return 0
            need_cmd psql
            write_pgpass
            PSQL=admin_psql
            MANAGED="$(manages_server)"
            if ! admin_psql -c 'SELECT 1' >/dev/null; then
                if [ "$PURGE" = true ]; then
                    err "cannot connect to $PG_ADMIN_URL, so the databases cannot be dropped; nothing kept was removed
help: check the server and postgres.admin_password_file, then run this again"
                fi
                warn "cannot connect to $PG_ADMIN_URL: its pg_hba.conf is left alone"
                return 0
            fi
            ;;
    esac
    if [ "$PURGE" = true ]; then
        drop_databases
    fi
    if [ "$MANAGED" = true ]; then
        remove_hba_block
        if [ "$PURGE" = true ]; then
            restore_settings
        fi
    fi
}

local_psql() {
    (cd / && runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 -d postgres "$@")
}

admin_psql() {
    PGPASSFILE="$TMP_DIR/pgpass" PGCONNECT_TIMEOUT=10 PGOPTIONS='-c client_min_messages=warning' \
        psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$PG_ADMIN_URL" "$@"
}

# The admin password into a 0600 password file in our temp dir: never in argv or the environment.
write_pgpass() {
    if [ -n "${FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD:-}" ]; then
        password="$FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD"
    elif [ -n "$PG_PASSWORD_FILE" ] && [ -r "$R$PG_PASSWORD_FILE" ]; then
        IFS= read -r password <"$R$PG_PASSWORD_FILE" || [ -n "$password" ] || password=""
    else
        password=""
    fi
    (
        umask 077
        # printf is a builtin: the password goes to the file, not to any argv.
        printf '%s\n' "$password" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g' -e 's/^/*:*:*:*:/' >"$TMP_DIR/pgpass"
    ) || err "cannot write a password file in $TMP_DIR"
    password=""
}

# Whether foreman-box managed the server's pg_hba.conf: as the installer decides it.
manages_server() {
    case "$PG_MANAGE" in
        true | false)
            echo "$PG_MANAGE"
            return 0
            ;;
    esac
    host="${PG_ADMIN_URL#*://}"
    host="${host#*@}"
    case "$host" in
        \[*) host="${host#\[}" && host="${host%%\]*}" ;;
        *) host="${host%%[:/]*}" ;;
    esac
    case "$host" in
        localhost | 127.* | ::1) echo true ;;
        *) echo false ;;
    esac
}

drop_databases() {
    sql="SET client_min_messages = warning;"
    for db in $DATABASES; do
        sql="$sql DROP DATABASE IF EXISTS \"$db\" WITH (FORCE);"
    done
    for db in $DATABASES; do
        sql="$sql DROP ROLE IF EXISTS \"$db\";"
    done
    if [ "$PG_MODE" = local ]; then
        sql="$sql DROP ROLE IF EXISTS \"$ADMIN_ROLE\";"
    fi
    say "dropping the databases and roles $DATABASES (--purge)"
    printf '%s\n' "$sql" | "$PSQL" -f - >/dev/null \
        || err "dropping the databases failed; /etc/foreman-box and the Pulp content were kept
help: see the message above, fix it and run this again"
}

remove_hba_block() {
    hba="$("$PSQL" -c 'SHOW hba_file' </dev/null)" || {
        warn "cannot ask the server for its pg_hba.conf: the foreman-box block stays"
        return 0
    }
    [ -f "$hba" ] || return 0
    grep -qxF "$HBA_BEGIN" "$hba" || return 0
    # A copy keeps the owner and mode; the new content is moved over the file in one step.
    ensure cp -p "$hba" "$hba.foreman-box.tmp"
    awk -v b="$HBA_BEGIN" -v e="$HBA_END" '
        $0 == b { skip = 1; next }
        skip && $0 == e { skip = 0; next }
        !skip { print }' "$hba" >"$hba.foreman-box.tmp" || {
        rm -f "$hba.foreman-box.tmp"
        err "cannot write $hba.foreman-box.tmp"
    }
    ensure mv -f "$hba.foreman-box.tmp" "$hba"
    "$PSQL" -c 'SELECT pg_reload_conf()' </dev/null >/dev/null || warn "PostgreSQL did not reload its configuration"
    say "removed the foreman-box block from $hba and reloaded PostgreSQL"
}

# The settings foreman-box tuned, back to what the record says postgresql.auto.conf had: set
# back to the recorded value, or reset when it had none. Only into the cluster the record names.
restore_settings() {
    record="$R$PG_RECORD"
    if [ "$PG_ORIGIN" != found ]; then
        warn "$PG_RECORD does not record this server's settings from before foreman-box: $(echo "$PG_TUNED" | sed 's/ /, /g') stay as they are"
        return 0
    fi
    want="$(toml_get system_identifier <"$record")"
    have="$("$PSQL" -c 'SELECT system_identifier FROM pg_control_system()' </dev/null)" \
        || err "cannot read the server's system identifier; /etc/foreman-box was kept
help: see the message above, fix it and run this again"
    if [ "$want" != "$have" ]; then
        warn "$PG_RECORD describes another PostgreSQL cluster (system identifier $want, this one has $have): its settings stay as they are"
        return 0
    fi
    sql=""
    restored=""
    for name in $PG_TUNED; do
        case "$(toml_get "settings.$name.in_auto_conf" <"$record")" in
            true)
                value="$(toml_get "settings.$name.auto_conf" <"$record")"
                # Into SQL only what a setting of these can hold; nothing that ends the literal.
                case "$value" in
                    *[!A-Za-z0-9_.,:*/\ -]*)
                        warn "the recorded value of $name has characters this script does not put into SQL: set it back yourself (ALTER SYSTEM SET $name = ...), as $PG_RECORD says"
                        continue
                        ;;
                esac
                sql="$sql ALTER SYSTEM SET $name = '$value';"
                ;;
            false) sql="$sql ALTER SYSTEM RESET $name;" ;;
            *) continue ;;
        esac
        restored="$restored $name"
    done
    [ -n "$sql" ] || return 0
    printf '%s\n' "$sql" | "$PSQL" -f - >/dev/null \
        || err "putting back PostgreSQL's settings failed; /etc/foreman-box was kept
help: see the message above, fix it and run this again"
    say "put back PostgreSQL's settings from before foreman-box:$restored"
    # All of them take effect only on a restart (postmaster settings).
    if [ "$PG_MODE" = local ]; then
        ensure systemctl restart postgresql.service
        say "restarted PostgreSQL"
    else
        "$PSQL" -c 'SELECT pg_reload_conf()' </dev/null >/dev/null || warn "PostgreSQL did not reload its configuration"
        warn "$(echo "$PG_TUNED" | sed 's/ /, /g') take effect when $PG_ADMIN_URL restarts: restart it when convenient"
    fi
}

# The server foreman-box installed from packages, with its data (--purge, and the record says
# foreman-box installed it).
remove_local_server() {
    pm="$(toml_get package_manager <"$R$PG_RECORD")"
    say "removing the PostgreSQL server foreman-box installed, with its data (--purge)"
    if command -v systemctl >/dev/null 2>&1; then
        systemctl stop postgresql.service || warn "systemctl stop postgresql failed"
    fi
    case "$pm" in
        apt)
            remove_apt_server
            data='/var/lib/postgresql /etc/postgresql /var/log/postgresql'
            ;;
        dnf)
            ensure dnf remove -y -q postgresql-server
            data='/var/lib/pgsql'
            ;;
        zypper)
            ensure zypper --non-interactive remove postgresql-server
            data='/var/lib/pgsql'
            ;;
        *) err "$PG_RECORD names package manager '$pm'
help: remove the PostgreSQL server with the distribution's package manager, then run this again" ;;
    esac
    for d in $data; do
        remove_tree "$R$d" || exit 1
    done
    say "removed the PostgreSQL server and its data ($(echo "$data" | sed 's/ /, /g'))"
}

# The server's packages and what apt pulled in for them alone; packages apt would remove anyway
# (left unneeded before) stay. postgresql-common marks every postgresql-* package NeverAutoRemove
# (/etc/apt/apt.conf.d/02autoremove-postgresql) while a cluster exists, so those that came in as
# dependencies (marked automatic) are named, besides the postgresql metapackage; a client the
# person installed by name is manual and stays. The rest (libraries, perl) goes by --auto-remove,
# as far as apt finds nothing else wants it.
remove_apt_server() {
    need_cmd apt-get
    need_cmd apt-mark
    apt-get -s autoremove 2>/dev/null | awk '$1 == "Remv" { print $2 }' | sort -u >"$TMP_DIR/orphans"
    { echo postgresql; apt-mark showauto 2>/dev/null | grep -E '^postgresql-'; } >"$TMP_DIR/named"
    # shellcheck disable=SC2046 # one package name per word
    apt-get -s purge --auto-remove $(cat "$TMP_DIR/named") >"$TMP_DIR/apt-plan" 2>&1 || {
        cat "$TMP_DIR/apt-plan" >&2
        err "apt-get cannot plan removing the postgresql packages (above)
help: fix apt (apt-get check), then run this again"
    }
    awk '$1 == "Purg" || $1 == "Remv" { print $2 }' "$TMP_DIR/apt-plan" | sort -u \
        | grep -vxF -f "$TMP_DIR/orphans" >"$TMP_DIR/server-packages" || true
    if [ ! -s "$TMP_DIR/server-packages" ]; then
        say "the postgresql package is not installed any more"
        return 0
    fi
    say "purging $(tr '\n' ' ' <"$TMP_DIR/server-packages")"
    # shellcheck disable=SC2046 # one package name per word
    ensure env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $(cat "$TMP_DIR/server-packages")
}

# --- firewalld ------------------------------------------------------------------------------

clean_firewall() {
    [ "$REAL" = true ] || return 0
    command -v firewall-cmd >/dev/null 2>&1 || return 0
    firewall-cmd --state >/dev/null 2>&1 || return 0
    changed=false
    for cidr in "$CLUSTER_CIDR" "$SERVICE_CIDR"; do
        if firewall-cmd --permanent --zone=trusted --query-source="$cidr" >/dev/null 2>&1; then
            ensure firewall-cmd --permanent --zone=trusted --remove-source="$cidr" >/dev/null
            changed=true
        fi
    done
    if [ "$changed" = true ]; then
        ensure firewall-cmd --reload >/dev/null
        say "removed the pod and service networks from firewalld's trusted zone"
    fi
}

# --- what stays -----------------------------------------------------------------------------

purge_kept_data() {
    remove_tree "$R$PULP_DIR" || exit 1
    remove_tree "$R/etc/foreman-box" || exit 1
    remove_tree "$R/var/log/foreman-box" || exit 1
    if [ "$REAL" = true ] && command -v semanage >/dev/null 2>&1; then
        semanage fcontext --delete "$PULP_DIR(/.*)?" >/dev/null 2>&1 || true
    fi
}

report_kept() {
    cmd="$BIN_DIR/foreman-box-uninstall.sh"
    [ -f "$R$cmd" ] || cmd="foreman-box-uninstall.sh"
    [ "$REAL" = true ] || cmd="$cmd --root $ROOT"
    case "$PG_MODE" in
        local) server="the local PostgreSQL server" ;;
        *) server="${PG_ADMIN_URL:-the external PostgreSQL server}" ;;
    esac
    say "done: k3s and foreman-box are removed. Kept, so that a later install reuses them:"
    say "  the databases and roles $DATABASES on $server"
    case "$PG_MODE:$PG_ORIGIN" in
        local:installed) say "  the PostgreSQL server foreman-box installed, running, with its data" ;;
        *:found) say "  the PostgreSQL settings foreman-box tuned ($(echo "$PG_TUNED" | sed 's/ /, /g')); $PG_RECORD has the ones from before" ;;
    esac
    say "  $PULP_DIR (Pulp content)"
    say "  /etc/foreman-box (configuration, the stored database passwords and the copies of Foreman's generated Secrets)"
    if [ -d "$R/var/log/foreman-box" ]; then
        say "  /var/log/foreman-box (the log of each run, for a bug report)"
    fi
    if [ -f "$R$BIN_DIR/foreman-box-uninstall.sh" ]; then
        say "  $BIN_DIR/foreman-box-uninstall.sh (this script, to remove the rest later)"
    fi
    say "to remove them too: $cmd --purge"
}

main "$@" || exit 1; }
