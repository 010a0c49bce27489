//! The cluster as day-two work sees it: any kind listed in our namespace, pod logs (current and
//! previous), the images pods run, and the one write an upgrade makes (the stream, under its
//! own field manager). A client of its own from the same kubeconfig as [`crate::cluster`]
//! (which owns the install step's writes and readings), with the same bounded timeouts.

use crate::cluster::{Cluster, ClusterError};
use crate::host::Host;
use foreman_box_bundle::NAMESPACE;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use std::path::Path;

/// A client for the cluster the kubeconfig names.
#[derive(Clone)]
pub struct Inspector {
    client: Client,
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Api { what, source }
}

/// One container of one pod: what image it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    pub pod: String,
    pub container: String,
    /// The reference the pod asks for (`quay.io/foreman/foreman:3.18`).
    pub image: String,
    /// What the node pulled (`quay.io/foreman/foreman@sha256:...`), empty when not yet.
    pub image_id: String,
}

impl Inspector {
    /// A client from the same kubeconfig, set up the same way, as [`Cluster::connect`].
    pub async fn connect(host: &Host, explicit: Option<&Path>) -> Result<Inspector, ClusterError> {
        let cluster = Cluster::connect(host, explicit).await?;
        Ok(Inspector {
            client: cluster.client().clone(),
        })
    }

    /// Every object of a kind (`("apps/v1", "Deployment", "deployments")`) in our namespace,
    /// or cluster-wide for a cluster-scoped kind.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) -> Result<Vec<DynamicObject>, ClusterError> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(self.client.clone(), NAMESPACE, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        };
        let mut items = api
            .list(&ListParams::default())
            .await
            .map_err(api_err(format!("listing {plural}")))?
            .items;
        for o in &mut items {
            // A listed item carries no apiVersion/kind; put them back for the reader.
            o.types = Some(kube::core::TypeMeta {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            });
        }
        Ok(items)
    }

    /// Server-side apply of `body` to Foreman foreman/foreman as `manager`, without force: a
    /// field another manager holds with another value is a [`ClusterError::Conflict`].
    pub async fn apply_foreman_as(
        &self,
        manager: &str,
        body: &serde_json::Value,
    ) -> Result<(), ClusterError> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            NAMESPACE,
            &crate::cluster::foreman_resource(),
        );
        match api
            .patch(
                crate::cluster::RESOURCE,
                &PatchParams::apply(manager),
                &Patch::Apply(body),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Err(ClusterError::Conflict {
                conflicts: crate::cluster::describe_conflict(&status, body),
            }),
            Err(source) => Err(ClusterError::Api {
                what: format!(
                    "applying Foreman {NAMESPACE}/{} as {manager}",
                    crate::cluster::RESOURCE
                ),
                source,
            }),
        }
    }

    pub async fn pods(&self) -> Result<Vec<Pod>, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        Ok(pods
            .list(&ListParams::default())
            .await
            .map_err(api_err("listing Pods in namespace foreman"))?
            .items)
    }

    /// The log of a container, the previous run's when `previous`.
    pub async fn log(
        &self,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<String, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        pods.logs(
            pod,
            &LogParams {
                container: Some(container.to_string()),
                previous,
                ..Default::default()
            },
        )
        .await
        .map_err(api_err(format!(
            "reading the {}log of {pod} container {container}",
            if previous { "previous " } else { "" }
        )))
    }
}

/// The images of every container of `pods`, sorted by pod and container.
pub fn images(pods: &[Pod]) -> Vec<ImageInfo> {
    let mut out = Vec::new();
    for p in pods {
        let pod = p.metadata.name.clone().unwrap_or_default();
        let statuses: Vec<_> = p
            .status
            .iter()
            .flat_map(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
            })
            .collect();
        for c in p.spec.iter().flat_map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
        }) {
            let image_id = statuses
                .iter()
                .find(|s| s.name == c.name)
                .map(|s| s.image_id.clone())
                .unwrap_or_default();
            out.push(ImageInfo {
                pod: pod.clone(),
                container: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id,
            });
        }
    }
    out.sort_by(|a, b| (&a.pod, &a.container).cmp(&(&b.pod, &b.container)));
    out
}
