//! The tuning profiles: the host each is for, how many processes each component runs on it and
//! what each pod requests and may use, the way foremanctl sizes a host. The renders
//! ([`crate::resources`]) read these; what a whole deployment needs from its host is summed from
//! the renders in [`crate::sizing`].
//!
//! What comes from upstream (FC = theforeman/foremanctl at tag 2.0.0, Foreman 3.18):
//! - the profiles and the host each is for: src/vars/tuning/<profile>.yml (`min_cpu_cores`,
//!   `min_ram_mb`, PostgreSQL's `shared_buffers`; src/roles/postgresql/defaults/main.yml has the
//!   512MB the default and development profiles keep); `tuning: default` in src/vars/defaults.yml;
//! - puma: src/roles/foreman/defaults/main.yaml, workers = min(32, 1.5 × cores, GiB − 1.5) and
//!   5 threads;
//! - Pulp: src/roles/pulp/defaults/main.yaml, workers = min(8, cores), API workers =
//!   min(4, cores) + 1, content workers = 2 × min(8, cores) + 1;
//! - Candlepin's heap: src/roles/candlepin/templates/tomcat.conf `-Xms1024m -Xmx4096m`, raised to
//!   `-Xmx8192m` for extra-large and extra-extra-large by foreman-installer, foremanctl's ancestor
//!   (config/foreman.hiera/tuning/sizes/extra-large.yaml, extra-extra-large.yaml).
//!
//! FC evaluates those formulas with the facts of the host it installs on; a Kubernetes resource
//! has no host, so they are evaluated with the host the profile is for (its `min_cpu_cores` and
//! `min_ram_mb`). What FC does not say, because a host with systemd units reserves nothing, is
//! how much memory each process holds: the per-process requests below are estimates for Foreman
//! 3.18 with Katello, named as such, and the limits are ceilings (puma's follows the 1 GiB per
//! worker that FC's formula takes from GitLab's puma guidance).

use crate::crd::{ForemanSpec, Tuning};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;

/// A tuning profile: the host it is for and what FC sets from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub tuning: Tuning,
    /// FC src/vars/tuning/<profile>.yml `min_cpu_cores`.
    pub cpu_cores: u32,
    /// FC src/vars/tuning/<profile>.yml `min_ram_mb` (MiB, as FC compares it with memtotal_mb).
    pub memory_mib: u64,
    /// FC src/vars/tuning/<profile>.yml `postgresql_shared_buffers` (roles/postgresql defaults:
    /// 512MB where the profile sets none).
    pub postgres_shared_buffers_mib: u64,
    /// Candlepin's `-Xmx` (FC templates/tomcat.conf; foreman-installer sizes for XL and XXL).
    pub candlepin_heap_max_mib: u64,
}

/// Every profile FC 2.0.0 offers (src/playbooks/_tuning/metadata.obsah.yaml), smallest first.
pub const PROFILES: &[Profile] = &[
    Profile {
        tuning: Tuning::Development,
        cpu_cores: 4,
        memory_mib: 10240,
        postgres_shared_buffers_mib: 512,
        candlepin_heap_max_mib: 4096,
    },
    Profile {
        tuning: Tuning::Default,
        cpu_cores: 4,
        memory_mib: 20480,
        postgres_shared_buffers_mib: 512,
        candlepin_heap_max_mib: 4096,
    },
    Profile {
        tuning: Tuning::Medium,
        cpu_cores: 8,
        memory_mib: 32768,
        postgres_shared_buffers_mib: 4096,
        candlepin_heap_max_mib: 4096,
    },
    Profile {
        tuning: Tuning::Large,
        cpu_cores: 16,
        memory_mib: 65536,
        postgres_shared_buffers_mib: 8192,
        candlepin_heap_max_mib: 4096,
    },
    Profile {
        tuning: Tuning::ExtraLarge,
        cpu_cores: 32,
        memory_mib: 131072,
        postgres_shared_buffers_mib: 16384,
        candlepin_heap_max_mib: 8192,
    },
    Profile {
        tuning: Tuning::ExtraExtraLarge,
        cpu_cores: 48,
        memory_mib: 262144,
        postgres_shared_buffers_mib: 32768,
        candlepin_heap_max_mib: 8192,
    },
];

/// FC templates/tomcat.conf: `-Xms1024m`.
pub const CANDLEPIN_HEAP_MIN_MIB: u64 = 1024;
/// FC src/roles/foreman/defaults/main.yaml: foreman_puma_threads_max 5, min = max.
pub const PUMA_THREADS: u32 = 5;

impl Profile {
    pub fn of(tuning: Tuning) -> Profile {
        *PROFILES
            .iter()
            .find(|p| p.tuning == tuning)
            .expect("every tuning has a profile")
    }

    /// FC foreman_puma_workers: min(32, cores × 1.5, memtotal GiB − 1.5), truncated.
    pub fn puma_workers(&self) -> u32 {
        // In halves, so the arithmetic stays in integers: min(64, 3 × cores, 2 × GiB − 3) / 2.
        let half_gib = (self.memory_mib * 2 / 1024).saturating_sub(3);
        (64.min(u64::from(self.cpu_cores) * 3).min(half_gib) / 2) as u32
    }

    /// FC pulp_worker_count: min(8, cores).
    pub fn pulp_workers(&self) -> u32 {
        self.cpu_cores.min(8)
    }

    /// FC pulp_api_service_worker_count: min(4, cores) + 1.
    pub fn pulp_api_workers(&self) -> u32 {
        self.cpu_cores.min(4) + 1
    }

    /// FC pulp_content_service_worker_count: 2 × min(8, cores) + 1.
    pub fn pulp_content_workers(&self) -> u32 {
        2 * self.cpu_cores.min(8) + 1
    }

    /// Candlepin's JAVA_OPTS heap flags (FC templates/tomcat.conf keeps -Dcom.redhat.fips=false
    /// beside them).
    pub fn candlepin_java_opts(&self) -> String {
        format!(
            "-Xms{CANDLEPIN_HEAP_MIN_MIB}m -Xmx{}m -Dcom.redhat.fips=false",
            self.candlepin_heap_max_mib
        )
    }

    /// The memory PostgreSQL on the host holds: its shared buffers plus what its backends use.
    pub fn postgres_memory_bytes(&self) -> u64 {
        (self.postgres_shared_buffers_mib + POSTGRES_BACKENDS_MIB) * MIB
    }
}

/// The pods whose requests and limits are sized here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sized {
    /// Foreman's web container: puma's master and its workers.
    Web,
    DynflowOrchestrator,
    /// One Dynflow worker (sidekiq, concurrency 5, queues default and remote_execution).
    DynflowWorker,
    DynflowHostsQueue,
    Candlepin,
    PulpApi,
    PulpContent,
    /// One Pulp worker process.
    PulpWorker,
    Redis,
    Proxy,
    /// An nginx front end (the edge, pulp-control): a master and a worker per core.
    Nginx,
}

// Estimates (see the module comment): resident memory of one process, and CPU each asks for.
/// A booted Foreman Rails process with Katello's plugins (puma's preloaded master, sidekiq).
const RAILS_PROCESS_MIB: u64 = 768;
/// A sidekiq process running five Dynflow threads at once.
const DYNFLOW_WORKER_MIB: u64 = 1024;
/// What a forked puma worker adds to the master it shares copy-on-write pages with.
const PUMA_WORKER_MIB: u64 = 384;
/// Ceiling per puma worker: 1 GiB, the figure FC's worker formula takes from GitLab.
const PUMA_WORKER_LIMIT_MIB: u64 = 1024;
/// A sidekiq process's ceiling.
const SIDEKIQ_LIMIT_MIB: u64 = 2048;
/// The JVM's memory beyond the heap (metaspace, code cache, thread stacks, Artemis' buffers):
/// half of it at rest, all of it at the limit.
const JVM_NON_HEAP_MIB: u64 = 1024;
/// gunicorn's master and per-worker memory (pulp-api), aiohttp's (pulp-content).
const PULP_API_BASE_MIB: u64 = 256;
const PULP_API_WORKER_MIB: u64 = 128;
const PULP_API_WORKER_LIMIT_MIB: u64 = 512;
const PULP_CONTENT_BASE_MIB: u64 = 128;
const PULP_CONTENT_WORKER_MIB: u64 = 64;
const PULP_CONTENT_WORKER_LIMIT_MIB: u64 = 256;
/// One pulpcore worker, and its ceiling (syncing a large RPM repository).
const PULP_WORKER_MIB: u64 = 384;
const PULP_WORKER_LIMIT_MIB: u64 = 2048;
/// PostgreSQL's backends for every pool of every component (about a hundred connections).
const POSTGRES_BACKENDS_MIB: u64 = 1024;
/// The requests and limits of one container of `component` for this resource.
pub fn resources(spec: &ForemanSpec, component: Sized) -> ResourceRequirements {
    let p = Profile::of(spec.tuning);
    let (cpu, request_mib, limit_mib) = match component {
        Sized::Web => {
            let w = u64::from(p.puma_workers());
            (
                100 + 50 * w,
                RAILS_PROCESS_MIB + PUMA_WORKER_MIB * w,
                RAILS_PROCESS_MIB + PUMA_WORKER_LIMIT_MIB * w,
            )
        }
        Sized::DynflowOrchestrator | Sized::DynflowHostsQueue => {
            (100, RAILS_PROCESS_MIB, SIDEKIQ_LIMIT_MIB)
        }
        Sized::DynflowWorker => (200, DYNFLOW_WORKER_MIB, SIDEKIQ_LIMIT_MIB),
        Sized::Candlepin => (
            250,
            CANDLEPIN_HEAP_MIN_MIB + JVM_NON_HEAP_MIB / 2,
            p.candlepin_heap_max_mib + JVM_NON_HEAP_MIB,
        ),
        Sized::PulpApi => {
            let w = u64::from(p.pulp_api_workers());
            (
                50 + 50 * w,
                PULP_API_BASE_MIB + PULP_API_WORKER_MIB * w,
                PULP_API_BASE_MIB + PULP_API_WORKER_LIMIT_MIB * w,
            )
        }
        Sized::PulpContent => {
            let w = u64::from(p.pulp_content_workers());
            (
                50 + 25 * w,
                PULP_CONTENT_BASE_MIB + PULP_CONTENT_WORKER_MIB * w,
                PULP_CONTENT_BASE_MIB + PULP_CONTENT_WORKER_LIMIT_MIB * w,
            )
        }
        Sized::PulpWorker => (200, PULP_WORKER_MIB, PULP_WORKER_LIMIT_MIB),
        Sized::Redis => (50, 256, 1024),
        Sized::Proxy => (100, 256, 1024),
        Sized::Nginx => (50, 64, 256),
    };
    let quantities = |pairs: &[(&str, String)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.clone())))
                .collect(),
        )
    };
    ResourceRequirements {
        requests: quantities(&[
            ("cpu", format!("{cpu}m")),
            ("memory", format!("{request_mib}Mi")),
        ]),
        limits: quantities(&[("memory", format!("{limit_mib}Mi"))]),
        claims: None,
    }
}
