//! The `Foreman` custom resource. Spec keys are snake_case, as in the original design; every
//! field beyond the seed example has a default, and bounds live in the schema so the API server
//! refuses bad resources.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "app.theforeman.org",
    version = "v1alpha1",
    kind = "Foreman",
    namespaced,
    status = "ForemanStatus",
    shortname = "fm",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#
)]
pub struct ForemanSpec {
    /// FQDN Foreman is served on; the Ingress answers any host when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub hostname: Option<String>,
    /// Dynflow worker replicas (the orchestrator is one more). At least one: the workers are
    /// the only consumers of the `default` and `remote_execution` queues (FC
    /// dynflow-sidekiq@worker); at most what the tuning profile's host schedules.
    #[serde(default = "default_workers")]
    #[schemars(range(min = MIN_DYNFLOW_WORKERS, max = MAX_DYNFLOW_WORKERS))]
    pub dynflow_workers: u32,
    /// foremanctl's tuning profile (FC src/vars/tuning/): the host size the pods' process
    /// counts, requests and limits are made for.
    #[serde(default)]
    pub tuning: Tuning,
    #[serde(default)]
    pub plugins: Plugins,
    #[serde(default)]
    pub database: Database,
    #[serde(default)]
    pub storage: Storage,
    /// Image tag stream: `3.18` means `foreman-3.18` tags for Foreman's images.
    #[serde(default = "default_version")]
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+$"))]
    pub version: String,
    #[serde(default)]
    pub images: Images,
    /// Maintenance mode (backup, restore, upgrade): every writer is scaled to 0 (web, Dynflow,
    /// Pulp, Candlepin, proxy), the CronJobs are suspended and the edge answers 503 with a page
    /// that says so; the `Maintenance` condition turns True (reason `Reached`) once no writer
    /// pod is left, terminating ones included.
    #[serde(default, skip_serializing_if = "is_false")]
    pub maintenance: bool,
}

/// The spec of a resource written as `spec: {}`: every field at its schema default.
impl Default for ForemanSpec {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// foremanctl's tuning profiles (FC src/playbooks/_tuning/metadata.obsah.yaml), `default` as
/// in FC src/vars/defaults.yml.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Tuning {
    Development,
    #[default]
    Default,
    Medium,
    Large,
    ExtraLarge,
    ExtraExtraLarge,
}

impl Tuning {
    /// The name as written in the resource.
    pub fn name(self) -> &'static str {
        match self {
            Tuning::Development => "development",
            Tuning::Default => "default",
            Tuning::Medium => "medium",
            Tuning::Large => "large",
            Tuning::ExtraLarge => "extra-large",
            Tuning::ExtraExtraLarge => "extra-extra-large",
        }
    }
}

pub const MIN_DYNFLOW_WORKERS: u32 = 1;
pub const MAX_DYNFLOW_WORKERS: u32 = 32;

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Plugins {
    #[serde(default)]
    pub katello: bool,
    #[serde(default)]
    pub remote_execution: bool,
}

/// Secrets with keys host, port, name, user, password (and sslmode), one per database.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Database {
    #[serde(default = "default_foreman_db")]
    pub secret: String,
    #[serde(default = "default_candlepin_db")]
    pub candlepin_secret: String,
    #[serde(default = "default_pulp_db")]
    pub pulp_secret: String,
}

impl Default for Database {
    fn default() -> Self {
        Database {
            secret: default_foreman_db(),
            candlepin_secret: default_candlepin_db(),
            pulp_secret: default_pulp_db(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Storage {
    /// The claim Pulp's content lives on.
    #[serde(default = "default_pulp_claim")]
    pub pulp_claim: String,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            pulp_claim: default_pulp_claim(),
        }
    }
}

/// Full image references overriding the ones derived from `version`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Images {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreman: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreman_proxy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candlepin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// nginx for Pulp's mTLS front end (the default is not confirmed from upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulp_control: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ForemanStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Readiness per component: `ready` or what it waits for.
    #[serde(default)]
    pub components: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

/// The seed example's two workers (design.md).
pub const DEFAULT_DYNFLOW_WORKERS: u32 = 2;

fn default_workers() -> u32 {
    DEFAULT_DYNFLOW_WORKERS
}
/// The release stream a resource gets when it names none.
pub fn default_version() -> String {
    "3.18".into()
}
fn default_foreman_db() -> String {
    "foreman-db".into()
}
fn default_candlepin_db() -> String {
    "candlepin-db".into()
}
fn default_pulp_db() -> String {
    "pulp-db".into()
}
fn default_pulp_claim() -> String {
    "pulp-storage".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_example_is_accepted_and_defaulted() {
        let fm: Foreman = serde_yaml::from_str(
            "apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {name: foreman, namespace: foreman}\nspec:\n  dynflow_workers: 2\n  plugins: {katello: true, remote_execution: true}\n",
        )
        .unwrap();
        assert_eq!(fm.spec.dynflow_workers, 2);
        assert!(fm.spec.plugins.katello && fm.spec.plugins.remote_execution);
        assert_eq!(fm.spec.database.secret, "foreman-db");
        assert_eq!(fm.spec.storage.pulp_claim, "pulp-storage");
        assert_eq!(fm.spec.version, "3.18");
    }

    #[test]
    fn crd_schema_carries_bounds_and_defaults() {
        let crd = crate::schema::crd_yaml();
        let v: serde_json::Value = serde_yaml::from_str(&crd).unwrap();
        let spec = &v["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        assert_eq!(spec["dynflow_workers"]["maximum"].as_f64(), Some(32.0));
        assert_eq!(spec["dynflow_workers"]["minimum"].as_f64(), Some(1.0));
        assert_eq!(spec["dynflow_workers"]["default"], 2);
        assert_eq!(spec["version"]["default"], "3.18");
        assert_eq!(
            v["spec"]["versions"][0]["subresources"]["status"],
            serde_json::json!({})
        );
    }
}
