//! Roles and databases `foreman`, `candlepin`, `pulp`: each role logs in with a scram-sha-256
//! password generated once and kept in a 0600 file, each database is UTF8 and owned by its role.
//! Passwords cross the wire only as verifiers; a role whose password we cannot vouch for stops
//! the run rather than being silently given a new one.

use super::connection::Session;
use super::{Op, PostgresError, DATABASES};
use crate::action::Planned;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kept::{read_role_password, role_password_path, write_role_password};
use crate::secret::Secret;
use std::sync::Arc;
use tokio_postgres::error::SqlState;

/// Plans what the roles and databases need; returns each database role's password, stored or
/// generated for a role to be created (and written by that action).
pub(super) async fn plan(
    cx: &Context,
    db: &Arc<Session>,
    out: &mut Vec<Planned<Op>>,
) -> Result<Vec<Secret>> {
    let server = db.target.server();
    let mut passwords = Vec::new();
    for &name in DATABASES {
        let secret = role_password_path(name);
        let stored = read_role_password(&cx.host, name)?;
        let role = db
            .query_opt(
                "SELECT rolname FROM pg_roles WHERE rolname = $1",
                &[&name],
                &format!("looking up role {name}"),
            )
            .await?;
        let password = match (role.is_some(), stored) {
            (false, Some(stored)) => {
                out.push(create(name, stored.clone(), false));
                stored
            }
            (false, None) => {
                let generated = Secret::generate();
                out.push(create(name, generated.clone(), true));
                generated
            }
            (true, None) => {
                return Err(PostgresError::UnknownRolePassword {
                    role: name.into(),
                    server,
                    secret,
                }
                .into())
            }
            (true, Some(password)) => match password_state(db, name, &password).await? {
                PasswordState::Matches => password,
                PasswordState::Md5Matches => {
                    let op = Op::StoreScram {
                        name: name.into(),
                        password: password.clone(),
                    };
                    out.push(Planned::new(op, "stored as md5"));
                    password
                }
                PasswordState::Differs => {
                    return Err(PostgresError::RolePasswordMismatch {
                        role: name.into(),
                        server,
                        secret,
                    }
                    .into())
                }
            },
        };
        passwords.push(password);
        plan_database(db, name, out).await?;
    }
    Ok(passwords)
}

fn create(name: &str, password: Secret, generated: bool) -> Planned<Op> {
    let name = name.into();
    Planned::new(
        Op::CreateRole {
            name,
            password,
            generated,
        },
        "missing",
    )
}

/// The password is stored before the role exists, so a run killed in between finds it and
/// creates the role with it.
pub(super) async fn create_role(
    cx: &Context,
    db: &Session,
    name: &str,
    password: &Secret,
    generated: bool,
) -> Result<()> {
    if generated {
        write_role_password(&cx.host, name, password)?;
    }
    let stmt = format!(
        "CREATE ROLE \"{name}\" LOGIN PASSWORD {}",
        verifier_literal(password)
    );
    match db.execute(&stmt, &format!("creating role {name}")).await {
        // Created by a killed run after this one planned: the re-plan checks its password
        // against the stored one.
        Err(e) if sql_state(&e) == Some(&SqlState::DUPLICATE_OBJECT) => Ok(()),
        other => other,
    }
}

pub(super) async fn store_scram(db: &Session, name: &str, password: &Secret) -> Result<()> {
    let stmt = format!(
        "ALTER ROLE \"{name}\" PASSWORD {}",
        verifier_literal(password)
    );
    db.execute(&stmt, &format!("storing role {name}'s password as scram"))
        .await
}

pub(super) async fn create_database(db: &Session, name: &str) -> Result<()> {
    let stmt =
        format!("CREATE DATABASE \"{name}\" OWNER \"{name}\" ENCODING 'UTF8' TEMPLATE template0");
    match db
        .execute(&stmt, &format!("creating database {name}"))
        .await
    {
        // A killed run's CREATE DATABASE committed after this run looked: the database is
        // there; the re-plan checks its owner and encoding.
        Err(e)
            if matches!(
                sql_state(&e),
                Some(c) if *c == SqlState::DUPLICATE_DATABASE || *c == SqlState::UNIQUE_VIOLATION
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

pub(super) async fn set_owner(db: &Session, name: &str) -> Result<()> {
    db.execute(
        &format!("ALTER DATABASE \"{name}\" OWNER TO \"{name}\""),
        &format!("changing the owner of database {name}"),
    )
    .await
}

async fn plan_database(
    db: &Arc<Session>,
    name: &'static str,
    out: &mut Vec<Planned<Op>>,
) -> Result<()> {
    let row = db
        .query_opt(
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding) FROM pg_database WHERE datname = $1",
            &[&name],
            &format!("looking up database {name}"),
        )
        .await?;
    let Some(row) = row else {
        let op = Op::CreateDatabase { name: name.into() };
        out.push(Planned::new(op, "missing"));
        return Ok(());
    };
    let (owner, encoding): (String, String) = (row.get(0), row.get(1));
    if encoding != "UTF8" {
        return Err(PostgresError::NotUtf8 {
            database: name.into(),
            server: db.target.server(),
            encoding,
        }
        .into());
    }
    if owner != name {
        let op = Op::SetOwner { name: name.into() };
        out.push(Planned::new(op, format!("owned by {owner}")));
    }
    Ok(())
}

/// The SQLSTATE of a failed statement, if the server sent one.
fn sql_state(e: &Error) -> Option<&SqlState> {
    match e {
        Error::Postgres(PostgresError::Query { source, .. }) => source.code(),
        _ => None,
    }
}

enum PasswordState {
    Matches,
    Md5Matches,
    Differs,
}

/// Compares the role's stored verifier with our password, without sending the password.
async fn password_state(db: &Session, role: &str, password: &Secret) -> Result<PasswordState> {
    let row = db
        .query_one(
            "SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = $1",
            &[&role],
            &format!("reading role {role}'s verifier (needs a superuser)"),
        )
        .await?;
    let verifier: String = row.get(0);
    Ok(if scram_matches(&verifier, password.expose()) {
        PasswordState::Matches
    } else if verifier == postgres_protocol::password::md5(password.expose().as_bytes(), role) {
        PasswordState::Md5Matches
    } else {
        PasswordState::Differs
    })
}

/// Checks a `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` verifier against a password
/// (RFC 5802: StoredKey = H(HMAC(Hi(password, salt, i), "Client Key"))).
pub(crate) fn scram_matches(verifier: &str, password: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};
    type H = Hmac<Sha256>;
    let b64 = base64::engine::general_purpose::STANDARD;
    let parse = || -> Option<(u32, Vec<u8>, Vec<u8>)> {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iter, salt) = iter_salt.split_once(':')?;
        let (stored, _server) = keys.split_once(':')?;
        Some((
            iter.parse().ok()?,
            b64.decode(salt).ok()?,
            b64.decode(stored).ok()?,
        ))
    };
    let Some((iterations, salt, stored)) = parse() else {
        return false;
    };
    let mac = |key: &[u8], data: &[u8]| {
        let mut m = H::new_from_slice(key).expect("HMAC takes any key length");
        m.update(data);
        m.finalize().into_bytes()
    };
    // Hi(): PBKDF2 with HMAC-SHA-256, one output block. Postgres normalises with SASLprep; our
    // passwords are ASCII alphanumerics, for which it is the identity.
    let mut block = salt.clone();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = mac(password.as_bytes(), &block);
    let mut salted = u;
    for _ in 1..iterations {
        u = mac(password.as_bytes(), &u);
        for (s, x) in salted.iter_mut().zip(u.iter()) {
            *s ^= x;
        }
    }
    let client_key = mac(&salted, b"Client Key");
    Sha256::digest(client_key).as_slice() == stored.as_slice()
}

/// A scram-sha-256 verifier, as an SQL literal: only the verifier ever crosses the wire.
pub(super) fn verifier_literal(password: &Secret) -> String {
    let v = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    debug_assert!(!v.contains('\''));
    format!("'{v}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifier_check_accepts_own_password_only() {
        let v = postgres_protocol::password::scram_sha_256(b"correct horse");
        assert!(scram_matches(&v, "correct horse"));
        assert!(!scram_matches(&v, "wrong horse"));
        assert!(!scram_matches("md5abcdef", "correct horse"));
    }
}
