//! The Foreman operator: a `Foreman` custom resource (`app.theforeman.org/v1alpha1`) becomes the
//! whole deployment. `resources::desired` is the pure function from the resource to objects;
//! `controller` applies them with server-side apply, prunes what is no longer wanted and reports
//! status. Linked into `foreman-box` and run in the cluster as `foreman-box operator`.

pub mod controller;
pub mod crd;
pub mod generated;
pub mod idle;
pub mod images;
pub mod profile;
pub mod read;
pub mod resources;
pub mod schema;
pub mod secrets;
pub mod sizing;
pub mod streams;

pub use crd::{Foreman, ForemanSpec, ForemanStatus, Tuning};

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "foreman-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {what}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot read Foreman resource {path}\nhelp: {help}")]
    Read {
        path: String,
        help: &'static str,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{path}: {message}\nhelp: the Foreman resource's fields and bounds are in `foreman-box operator crd`")]
    Invalid { path: String, message: String },
    #[error("cannot render {what}")]
    Render {
        what: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("cannot generate {what}: {message}")]
    Generate { what: String, message: String },
    #[error("the Foreman resource has no namespace")]
    NoNamespace,
    #[error("the watches of {kinds} did not list them within {}s\nhelp: the operator's Role must allow list and watch on them; `kubectl auth can-i watch <kind> --as=system:serviceaccount:<namespace>:foreman-operator` shows whether it does", waited.as_secs())]
    Watch {
        kinds: String,
        waited: std::time::Duration,
    },
}
