//! PostgreSQL's errors, below the steps so that the crate's error type does not depend on a
//! step. Each names the server (host:port) and ends with what to do.

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("cannot log in to PostgreSQL at {server}: the server refused the password for `{user}`\nhelp: check postgres.admin_password_file or FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD; nothing was changed")]
    AuthFailed { server: String, user: String },
    #[error("cannot reach PostgreSQL at {server}: {reason}\nhelp: is the server running and listening there? check postgres.admin_url; nothing was changed")]
    Unreachable { server: String, reason: String },
    #[error("PostgreSQL at {server} does not let `{user}` in from here: {reason}\nhelp: allow this host in the server's pg_hba.conf; nothing was changed")]
    Rejected {
        server: String,
        user: String,
        reason: String,
    },
    #[error("external PostgreSQL needs the admin password\nhelp: write it to a 0600 file named by postgres.admin_password_file, or set FOREMAN_BOX_POSTGRES_ADMIN_PASSWORD")]
    NoAdminPassword,
    #[error("role `{role}` already exists on {server}, but foreman-box has no password for it in {secret}\nhelp: if you know its password, write it to {secret} (mode 0600) and re-run; if the role is left over and holds nothing you need, drop it (DROP ROLE {role}) and re-run. Nothing was changed.")]
    UnknownRolePassword {
        role: String,
        server: String,
        secret: String,
    },
    #[error("role `{role}` on {server} has a password other than the one stored in {secret}\nhelp: foreman-box does not rotate passwords on its own: put the role's current password in {secret}, or set the role's password to the stored one (ALTER ROLE {role} PASSWORD ...), then re-run. Nothing was changed.")]
    RolePasswordMismatch {
        role: String,
        server: String,
        secret: String,
    },
    #[error("database `{database}` on {server} has encoding {encoding}, Foreman needs UTF8\nhelp: move its data elsewhere and drop it; foreman-box never drops a database")]
    NotUtf8 {
        database: String,
        server: String,
        encoding: String,
    },
    #[error("`{user}` on {server} is not a superuser, which managing pg_hba.conf and server settings needs\nhelp: use a superuser in postgres.admin_url, or set postgres.manage_server = false and configure pg_hba.conf yourself")]
    NotSuperuser { user: String, server: String },
    #[error("postgres.mode = \"local\" installs and runs this machine's PostgreSQL server, which a --root run must not touch\nhelp: use --postgres-mode external with --postgres-admin-url, or skip the step (--only)")]
    LocalUnderRoot,
    #[error("local PostgreSQL is not supported on this distribution\nhelp: use postgres.mode = \"external\" with your own server")]
    NoPackageManager,
    #[error("PostgreSQL at {server} did not answer within {after:?} while {what}\nhelp: is {server} a PostgreSQL server, and is it reachable and not overloaded? check postgres.admin_url")]
    Timeout {
        server: String,
        what: String,
        after: std::time::Duration,
    },
    #[error("local PostgreSQL runs, but foreman-box has no admin login for it in {secret}\nhelp: re-run `foreman-box install`, which creates the admin role first")]
    NoLocalAdmin { secret: String },
    #[error("PostgreSQL at {server}: {what} failed")]
    Query {
        server: String,
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
}
