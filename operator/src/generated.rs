//! The Secrets whose values are generated once per resource: tokens and keys, the CA, the
//! certificates it signs (the only values ever renewed, by the controller), Pulp's symmetric key
//! and the Remote Execution SSH key. One list for the controller, which creates whichever is
//! missing, and for foreman-box's installer, which creates them first from the copies it keeps
//! outside the cluster, so a cluster that is rebuilt on kept databases gets the same values back.
//!
//! The CA and the certificates are two Secrets made from each other: [`generate`] takes the
//! values of the other generated Secrets that exist already ([`Known`]), so the certificates are
//! signed by the CA the cluster keeps, and a CA that an older operator kept inside the
//! certificate Secret moves into its own.

use crate::crd::Foreman;
use crate::resources::certificates::{self, CA_SECRET};
use crate::resources::{
    proxy, pulp, GENERATED_KEYS, GENERATED_SECRET, INSTANCE_LABEL, PULP_KEY_SECRET, REX_SSH_SECRET,
    TLS_SECRET,
};
use crate::Error;
use kube::ResourceExt;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// One generated Secret: its name and Kubernetes type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    pub name: &'static str,
    pub type_: &'static str,
}

/// The generated Secrets this resource needs, in the order they are made.
pub fn needed(fm: &Foreman) -> Vec<Generated> {
    let mut out = vec![
        Generated {
            name: GENERATED_SECRET,
            type_: "Opaque",
        },
        Generated {
            name: CA_SECRET,
            type_: "Opaque",
        },
        Generated {
            name: TLS_SECRET,
            type_: "kubernetes.io/tls",
        },
    ];
    if fm.spec.plugins.katello {
        out.push(Generated {
            name: PULP_KEY_SECRET,
            type_: "Opaque",
        });
    }
    if fm.spec.plugins.remote_execution {
        out.push(Generated {
            name: REX_SSH_SECRET,
            type_: "Opaque",
        });
    }
    out
}

/// The values of generated Secrets that exist (in the cluster, or in a kept copy), by name.
pub type Known = BTreeMap<String, BTreeMap<String, String>>;

/// The generated Secrets whose existing values [`generate`] reads for `name`: put them in
/// [`Known`] first when they exist.
pub fn inputs(name: &str) -> &'static [&'static str] {
    match name {
        // An older operator's certificate Secret holds the CA to keep.
        CA_SECRET => &[TLS_SECRET],
        // The certificates are signed by the CA.
        TLS_SECRET => &[CA_SECRET],
        _ => &[],
    }
}

/// Fresh values for the Secret `name`, from the OS RNG, or from the [`inputs`] it needs.
pub fn generate(
    fm: &Foreman,
    name: &str,
    known: &Known,
) -> Result<BTreeMap<String, String>, Error> {
    let now = std::time::SystemTime::now();
    match name {
        GENERATED_SECRET => Ok(GENERATED_KEYS
            .iter()
            .map(|k| (k.to_string(), crate::secrets::token(48)))
            .collect()),
        CA_SECRET => match known
            .get(TLS_SECRET)
            .and_then(certificates::ca_from_older_tls)
        {
            Some(kept) => Ok(kept),
            None => certificates::new_ca(now),
        },
        TLS_SECRET => {
            let ca = known.get(CA_SECRET).ok_or_else(|| Error::Generate {
                what: format!("Secret {TLS_SECRET}"),
                message: format!("its certificates are signed by the CA in Secret {CA_SECRET}, which must be made first"),
            })?;
            certificates::issue(fm, ca, now)
        }
        PULP_KEY_SECRET => Ok(BTreeMap::from([(
            pulp::PULP_KEY.to_string(),
            crate::secrets::fernet_key(),
        )])),
        REX_SSH_SECRET => {
            let (private, public) = crate::secrets::ssh_keypair(&format!(
                "foreman-proxy@{}",
                fm.spec.hostname.as_deref().unwrap_or("foreman")
            ))
            .map_err(|e| Error::Generate {
                what: "the Remote Execution SSH key".into(),
                message: e.to_string(),
            })?;
            Ok(BTreeMap::from([
                (proxy::SSH_KEY.into(), private),
                (proxy::SSH_PUB.into(), public),
            ]))
        }
        other => Err(Error::Generate {
            what: format!("Secret {other}"),
            message: "not a generated Secret".into(),
        }),
    }
}

/// The labels a generated Secret carries, whoever creates it.
pub fn labels(fm: &Foreman) -> Value {
    json!({INSTANCE_LABEL: fm.name_any(), "app.kubernetes.io/part-of": "foreman"})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn foreman(katello: bool, rex: bool) -> Foreman {
        serde_json::from_value(json!({
            "apiVersion": "app.theforeman.org/v1alpha1", "kind": "Foreman",
            "metadata": {"name": "foreman", "namespace": "foreman"},
            "spec": {"hostname": "foreman.example.com", "plugins": {"katello": katello, "remote_execution": rex}},
        }))
        .unwrap()
    }

    #[test]
    fn plugins_decide_which_secrets_are_needed() {
        let names = |k, r| {
            needed(&foreman(k, r))
                .iter()
                .map(|g| g.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(false, false),
            [GENERATED_SECRET, CA_SECRET, TLS_SECRET]
        );
        assert_eq!(
            names(true, true),
            [
                GENERATED_SECRET,
                CA_SECRET,
                TLS_SECRET,
                PULP_KEY_SECRET,
                REX_SSH_SECRET
            ]
        );
    }

    /// Each Secret made in order, each seeing the ones before it, as the controller and the
    /// installer make them.
    fn make_all(fm: &Foreman) -> Known {
        let mut known = Known::new();
        for g in needed(fm) {
            let values = generate(fm, g.name, &known).unwrap();
            known.insert(g.name.to_string(), values);
        }
        known
    }

    #[test]
    fn every_needed_secret_generates_fresh_complete_values() {
        let fm = foreman(true, true);
        let (a, b) = (make_all(&fm), make_all(&fm));
        for g in needed(&fm) {
            let (a, b) = (&a[g.name], &b[g.name]);
            assert!(!a.is_empty(), "{}", g.name);
            assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
            assert_ne!(a, b, "{} must be random", g.name);
        }
        let keys = |name: &str| a[name].keys().map(String::as_str).collect::<Vec<_>>();
        let mut tls_keys = certificates::KEYS.to_vec();
        tls_keys.sort();
        assert_eq!(keys(TLS_SECRET), tls_keys);
        assert_eq!(keys(CA_SECRET), certificates::CA_KEYS);
        assert!(generate(&fm, "foreman-db", &Known::new()).is_err());
    }

    #[test]
    fn certificates_are_signed_by_the_ca_that_was_made_before_them() {
        let fm = foreman(false, false);
        let known = make_all(&fm);
        assert_eq!(
            known[TLS_SECRET][certificates::CA_CRT],
            known[CA_SECRET][certificates::CA_CRT]
        );
        let now = std::time::SystemTime::now();
        assert_eq!(
            certificates::due(&fm, &known[CA_SECRET], &known[TLS_SECRET], now),
            []
        );
        let err = generate(&fm, TLS_SECRET, &Known::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Secret foreman-ca, which must be made first"),
            "{err}"
        );
    }

    #[test]
    fn the_ca_an_older_operator_kept_in_the_certificate_secret_moves_to_its_own() {
        let fm = foreman(false, false);
        let made = make_all(&fm);
        let mut older = made[TLS_SECRET].clone();
        older.extend(made[CA_SECRET].clone());
        let known = Known::from([(TLS_SECRET.to_string(), older)]);
        assert_eq!(generate(&fm, CA_SECRET, &known).unwrap(), made[CA_SECRET]);

        // An ECDSA CA (what operators made before keys were RSA) is replaced: Candlepin cannot read it.
        let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&ec)
            .unwrap();
        let known = Known::from([(
            TLS_SECRET.to_string(),
            BTreeMap::from([
                (certificates::CA_CRT.to_string(), cert.pem()),
                (certificates::CA_KEY.to_string(), ec.serialize_pem()),
            ]),
        )]);
        let fresh = generate(&fm, CA_SECRET, &known).unwrap();
        assert_ne!(fresh[certificates::CA_KEY], ec.serialize_pem());
        assert!(fresh[certificates::CA_KEY].starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
