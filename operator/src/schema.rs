//! The CustomResourceDefinition as the API server gets it: the schema derived from the types of
//! [`crate::crd`], with the sizing rule of [`crate::sizing`] on `spec` (the resource fits the host
//! its tuning profile is for). Here, above both, so that the types need not know the sizing.

use crate::crd::Foreman;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, ValidationRule,
};

/// The CRD, generated from the types, with the rule the API server checks on every write.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = <Foreman as kube::CustomResourceExt>::crd();
    let rules: Vec<ValidationRule> = serde_json::from_value(crate::sizing::validation_rules())
        .expect("the sizing rule is a list of ValidationRules");
    for version in &mut crd.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
            .expect("the derived schema has a spec");
        spec.x_kubernetes_validations = Some(rules.clone());
    }
    crd
}

/// The CRD as YAML.
pub fn crd_yaml() -> String {
    serde_yaml::to_string(&crd()).expect("the CRD serialises")
}
