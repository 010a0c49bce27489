//! The Secrets whose values are generated once per resource and never rotated: tokens and keys,
//! the CA with its certificates, Pulp's symmetric key and the Remote Execution SSH key. One list
//! for the controller, which creates whichever is missing, and for foreman-box's installer,
//! which creates them first from the copies it keeps outside the cluster, so a cluster that is
//! rebuilt on kept databases gets the same values back.

use crate::crd::Foreman;
use crate::resources::{
    certificates, pulp, GENERATED_KEYS, GENERATED_SECRET, INSTANCE_LABEL, PULP_KEY_SECRET,
    REX_SSH_SECRET, TLS_SECRET,
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

/// Fresh values for the Secret `name`, from the OS RNG.
pub fn generate(fm: &Foreman, name: &str) -> Result<BTreeMap<String, String>, Error> {
    match name {
        GENERATED_SECRET => Ok(GENERATED_KEYS
            .iter()
            .map(|k| (k.to_string(), crate::secrets::token(48)))
            .collect()),
        TLS_SECRET => certificates::generate(fm).map_err(|e| Error::Generate {
            what: "the CA and certificates".into(),
            message: e.to_string(),
        }),
        PULP_KEY_SECRET => Ok(BTreeMap::from([(
            pulp::PULP_KEY.to_string(),
            crate::secrets::fernet_key(),
        )])),
        REX_SSH_SECRET => {
            let (private, public) = crate::secrets::ssh_keypair(&format!(
                "foreman-proxy@{}",
                fm.spec.hostname.as_deref().unwrap_or("foreman")
            ));
            Ok(BTreeMap::from([
                ("id_rsa_foreman_proxy".into(), private),
                ("id_rsa_foreman_proxy.pub".into(), public),
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
        assert_eq!(names(false, false), [GENERATED_SECRET, TLS_SECRET]);
        assert_eq!(
            names(true, true),
            [
                GENERATED_SECRET,
                TLS_SECRET,
                PULP_KEY_SECRET,
                REX_SSH_SECRET
            ]
        );
    }

    #[test]
    fn every_needed_secret_generates_fresh_complete_values() {
        let fm = foreman(true, true);
        for g in needed(&fm) {
            let a = generate(&fm, g.name).unwrap();
            let b = generate(&fm, g.name).unwrap();
            assert!(!a.is_empty(), "{}", g.name);
            assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
            assert_ne!(a, b, "{} must be random", g.name);
        }
        let tls = generate(&fm, TLS_SECRET).unwrap();
        assert!(certificates::KEYS.iter().all(|k| tls.contains_key(*k)));
        assert!(generate(&fm, "foreman-db").is_err());
    }
}
