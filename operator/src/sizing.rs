//! What a deployment needs from the host it runs on ([`requirements`]), summed from the rendered
//! objects with the sizes of [`crate::profile`]; the bound of each profile that the CRD's
//! validation rule, `operator render` and the installer's preflight compare a resource against.
//!
//! k3s's own share: docs.k3s.io/reference/resource-profiling, "K3s server with a workload"
//! 1596 M; its CoreDNS and metrics-server request 100m each (k3s manifests/).

use crate::crd::{Foreman, ForemanSpec, Plugins, Tuning};
use crate::profile::{Profile, GIB, MIB, PROFILES};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// docs.k3s.io/reference/resource-profiling: K3s server with a workload, 1596 M.
pub const K3S_MEMORY_MIB: u64 = 1596;
/// k3s manifests/coredns.yaml and metrics-server: 100m each, 70Mi each (inside the 1596 M).
pub const K3S_CPU_MILLIS: u64 = 200;

/// What a deployment needs from its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirements {
    /// The sum of the CPU requests of every pod the Deployments keep running.
    pub pods_cpu_millis: u64,
    /// The sum of their memory requests.
    pub pods_memory_bytes: u64,
    /// PostgreSQL on the host (shared buffers of the profile, and its backends).
    pub postgres_memory_bytes: u64,
    /// k3s itself and the requests of its system pods.
    pub k3s_cpu_millis: u64,
    pub k3s_memory_bytes: u64,
}

impl Requirements {
    /// CPU the scheduler must find on the node: our pods' requests and k3s's system pods'.
    pub fn cpu_millis(&self) -> u64 {
        self.pods_cpu_millis + self.k3s_cpu_millis
    }

    /// Memory the host must have: our pods' requests, PostgreSQL and k3s.
    pub fn memory_bytes(&self) -> u64 {
        self.pods_memory_bytes + self.postgres_memory_bytes + self.k3s_memory_bytes
    }
}

/// What the deployment of `spec` needs: the requests of every pod its Deployments run (Jobs and
/// CronJobs come and go and request nothing), plus PostgreSQL and k3s on the host. Summed from
/// the rendered objects, so it is what the scheduler will be asked for.
pub fn requirements(spec: &ForemanSpec) -> Requirements {
    Line::of(spec).at(spec.dynflow_workers)
}

/// Requirements as a function of the Dynflow worker count: the rest of the deployment plus one
/// identical pod per worker. One render gives the whole line.
#[derive(Debug, Clone, Copy)]
struct Line {
    rest: Requirements,
    worker_cpu_millis: u64,
    worker_memory_bytes: u64,
}

impl Line {
    /// The line of `spec`. A spec that differs from the defaults only in its tuning profile,
    /// plugins, Dynflow worker count and hostname (every spec the installer and the CRD's rule
    /// ask about) has its line rendered once per process, per profile and plugin set: preflight
    /// asks about every profile, and each render is a couple of milliseconds.
    fn of(spec: &ForemanSpec) -> Line {
        const N: usize = PROFILES.len();
        static LINES: [[OnceLock<Line>; 4]; N] = [const { [const { OnceLock::new() }; 4] }; N];
        let (row, col) = cell(spec);
        let canonical = spec_for(
            spec.tuning,
            spec.plugins.katello,
            spec.plugins.remote_execution,
        );
        let mut plain = spec.clone();
        plain.dynflow_workers = canonical.dynflow_workers;
        plain.hostname = None;
        if plain != canonical {
            return Line::render(spec);
        }
        *LINES[row][col].get_or_init(|| Line::render(&canonical))
    }

    fn render(spec: &ForemanSpec) -> Line {
        let mut fm = Foreman::new("foreman", spec.clone());
        fm.metadata.namespace = Some("foreman".into());
        let p = Profile::of(spec.tuning);
        let mut rest = Requirements {
            pods_cpu_millis: 0,
            pods_memory_bytes: 0,
            postgres_memory_bytes: p.postgres_memory_bytes(),
            k3s_cpu_millis: K3S_CPU_MILLIS,
            k3s_memory_bytes: K3S_MEMORY_MIB * MIB,
        };
        let mut worker = None;
        for o in crate::resources::objects(&fm) {
            let crate::resources::Object::Deployment(d) = o else {
                continue;
            };
            let spec = d.spec.unwrap_or_default();
            let (cpu, memory) = spec.template.spec.as_ref().map_or((0, 0), pod_requests);
            if d.metadata.name.as_deref() == Some(crate::resources::core::DYNFLOW_WORKER) {
                worker = Some((cpu, memory));
            } else {
                let replicas = u64::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
                rest.pods_cpu_millis += cpu * replicas;
                rest.pods_memory_bytes += memory * replicas;
            }
        }
        let (worker_cpu_millis, worker_memory_bytes) =
            worker.expect("every render has the Dynflow worker Deployment");
        Line {
            rest,
            worker_cpu_millis,
            worker_memory_bytes,
        }
    }

    fn at(&self, workers: u32) -> Requirements {
        let w = u64::from(workers);
        Requirements {
            pods_cpu_millis: self.rest.pods_cpu_millis + w * self.worker_cpu_millis,
            pods_memory_bytes: self.rest.pods_memory_bytes + w * self.worker_memory_bytes,
            ..self.rest
        }
    }
}

/// A pod's requests as the scheduler counts them: the larger of its containers' sum and its
/// largest init container (millicores, bytes).
pub fn pod_requests(pod: &PodSpec) -> (u64, u64) {
    let of = |c: &Container, what: &str| -> u64 {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        requests.and_then(|r| r.get(what)).map_or(0, |q| {
            parse_quantity(&q.0, what == "cpu").unwrap_or_else(|| {
                panic!(
                    "resource quantity {:?} of {what} is in a form sizing cannot read",
                    q.0
                )
            })
        })
    };
    let sum = |what: &str| pod.containers.iter().map(|c| of(c, what)).sum::<u64>();
    let init = |what: &str| {
        let init = pod.init_containers.iter().flatten();
        init.map(|c| of(c, what)).max().unwrap_or(0)
    };
    (
        sum("cpu").max(init("cpu")),
        sum("memory").max(init("memory")),
    )
}

/// A Kubernetes quantity: CPU in millicores (`250m`, `2`), memory in bytes (`512Mi`, `1Gi`,
/// `1G`, `1024`). None for forms not listed.
pub fn parse_quantity(q: &str, cpu: bool) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (digits, suffix) = q.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let factor: u64 = match (cpu, suffix) {
        (true, "m") => 1,
        (true, "") => 1000,
        (false, "") => 1,
        (false, "Ki") => 1 << 10,
        (false, "Mi") => 1 << 20,
        (false, "Gi") => 1 << 30,
        (false, "Ti") => 1 << 40,
        (false, "k") => 1000,
        (false, "M") => 1_000_000,
        (false, "G") => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// The most Dynflow workers a host of `cpu_millis` and `memory_bytes` can schedule next to the
/// rest of `spec`'s deployment (`spec.dynflow_workers` is ignored); 0 when not even one fits.
/// With `local_postgres` false, PostgreSQL runs elsewhere and takes nothing from this host.
pub fn max_dynflow_workers(
    spec: &ForemanSpec,
    cpu_millis: u64,
    memory_bytes: u64,
    local_postgres: bool,
) -> u32 {
    let line = Line::of(spec);
    let pg = if local_postgres {
        0
    } else {
        line.rest.postgres_memory_bytes
    };
    (1..=crate::crd::MAX_DYNFLOW_WORKERS)
        .take_while(|w| {
            let r = line.at(*w);
            r.cpu_millis() <= cpu_millis && r.memory_bytes() - pg <= memory_bytes
        })
        .last()
        .unwrap_or(0)
}

/// The CRD's bound: per profile and plugin combination, the most Dynflow workers the profile's
/// own host (its `min_cpu_cores`, `min_ram_mb`) schedules. Indexed by profile (as [`PROFILES`])
/// and by `2 × katello + remote_execution`.
pub fn profile_bounds() -> Vec<[u32; 4]> {
    (0..PROFILES.len())
        .map(|row| std::array::from_fn(|col| bound(row, col)))
        .collect()
}

/// One cell of [`profile_bounds`], worked out once per process when first asked for.
fn bound(row: usize, col: usize) -> u32 {
    const N: usize = PROFILES.len();
    static BOUNDS: [[OnceLock<u32>; 4]; N] = [const { [const { OnceLock::new() }; 4] }; N];
    *BOUNDS[row][col].get_or_init(|| {
        let p = PROFILES[row];
        let spec = spec_for(p.tuning, col & 2 != 0, col & 1 != 0);
        max_dynflow_workers(
            &spec,
            u64::from(p.cpu_cores) * 1000,
            p.memory_mib * MIB,
            true,
        )
    })
}

/// The row and column of `spec`'s profile and plugins in [`profile_bounds`].
fn cell(spec: &ForemanSpec) -> (usize, usize) {
    let row = PROFILES
        .iter()
        .position(|p| p.tuning == spec.tuning)
        .expect("every tuning has a profile");
    let col = usize::from(spec.plugins.katello) * 2 + usize::from(spec.plugins.remote_execution);
    (row, col)
}

fn spec_for(tuning: Tuning, katello: bool, remote_execution: bool) -> ForemanSpec {
    let mut spec: ForemanSpec = serde_json::from_value(json!({})).expect("defaults suffice");
    spec.tuning = tuning;
    spec.plugins = Plugins {
        katello,
        remote_execution,
    };
    spec
}

/// The profile's bound for this resource.
pub fn profile_bound(spec: &ForemanSpec) -> u32 {
    let (row, col) = cell(spec);
    bound(row, col)
}

/// `operator render`'s (and the controller's) form of the CRD's rule: the resource must fit the
/// host its tuning profile is for. The message names the numbers and what to change.
pub fn check_profile(spec: &ForemanSpec) -> Result<(), String> {
    let bound = profile_bound(spec);
    if spec.dynflow_workers <= bound {
        return Ok(());
    }
    let p = Profile::of(spec.tuning);
    let r = requirements(spec);
    let what = describe(&spec.plugins);
    let fits = if bound == 0 {
        format!("no Dynflow worker fits next to {what}")
    } else {
        format!("at most {bound} fit")
    };
    Err(format!(
        "`spec.dynflow_workers` is {}: {what} with {} Dynflow workers requests {} and {} CPU, more than the {} tuning profile's host ({} cores, {}) schedules next to PostgreSQL and k3s; {fits}\nhelp: lower spec.dynflow_workers, or set spec.tuning to a larger profile ({})",
        spec.dynflow_workers,
        spec.dynflow_workers,
        gib(r.memory_bytes()),
        cores(r.cpu_millis()),
        spec.tuning.name(),
        p.cpu_cores,
        gib(p.memory_mib * MIB),
        larger_profiles(spec).join(", "),
    ))
}

/// The profiles that would take this resource as it is.
fn larger_profiles(spec: &ForemanSpec) -> Vec<&'static str> {
    PROFILES
        .iter()
        .filter(|p| {
            let mut s = spec.clone();
            s.tuning = p.tuning;
            profile_bound(&s) >= spec.dynflow_workers
        })
        .map(|p| p.tuning.name())
        .collect()
}

/// "Katello and Remote Execution", "Foreman" ...
pub fn describe(plugins: &Plugins) -> &'static str {
    match (plugins.katello, plugins.remote_execution) {
        (true, true) => "Foreman with Katello and Remote Execution",
        (true, false) => "Foreman with Katello",
        (false, true) => "Foreman with Remote Execution",
        (false, false) => "Foreman",
    }
}

/// `19.3 GiB`.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / GIB as f64)
}

/// `3.4` (cores).
pub fn cores(millis: u64) -> String {
    format!("{:.1}", millis as f64 / 1000.0)
}

/// The CRD's `x-kubernetes-validations` on `spec`: the same bound as [`check_profile`], as a
/// table the API server indexes by `spec.tuning` and the plugins.
pub fn validation_rules() -> Value {
    let table: Vec<String> = PROFILES
        .iter()
        .zip(profile_bounds())
        .map(|(p, row)| {
            let row: Vec<String> = row.iter().map(u32::to_string).collect();
            format!("'{}': [{}]", p.tuning.name(), row.join(", "))
        })
        .collect();
    let index = "(has(self.plugins) && has(self.plugins.katello) && self.plugins.katello ? 2 : 0) + (has(self.plugins) && has(self.plugins.remote_execution) && self.plugins.remote_execution ? 1 : 0)";
    // The API server fills defaults before it validates; `has` keeps the rule total anyway.
    let tuning = format!(
        "(has(self.tuning) ? self.tuning : '{}')",
        Tuning::default().name()
    );
    let workers = format!(
        "(has(self.dynflow_workers) ? self.dynflow_workers : {})",
        crate::crd::DEFAULT_DYNFLOW_WORKERS
    );
    let bound = format!("{{{}}}[{tuning}][{index}]", table.join(", "));
    json!([{
        "rule": format!("{workers} <= {bound}"),
        "messageExpression": format!("'spec.dynflow_workers is ' + string({workers}) + ': a host of the ' + {tuning} + ' tuning profile schedules at most ' + string({bound}) + ' next to these plugins, PostgreSQL and k3s; lower spec.dynflow_workers or choose a larger spec.tuning'"),
        "reason": "FieldValueInvalid",
        "fieldPath": ".dynflow_workers",
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{resources, Sized};

    fn spec(tuning: Tuning, workers: u32, katello: bool, rex: bool) -> ForemanSpec {
        let mut s = spec_for(tuning, katello, rex);
        s.dynflow_workers = workers;
        s
    }

    #[test]
    fn profile_table_is_foremanctls() {
        let rows: Vec<(&str, u32, u64, u64, u64)> = PROFILES
            .iter()
            .map(|p| {
                (
                    p.tuning.name(),
                    p.cpu_cores,
                    p.memory_mib,
                    p.postgres_shared_buffers_mib,
                    p.candlepin_heap_max_mib,
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("development", 4, 10240, 512, 4096),
                ("default", 4, 20480, 512, 4096),
                ("medium", 8, 32768, 4096, 4096),
                ("large", 16, 65536, 8192, 4096),
                ("extra-large", 32, 131072, 16384, 8192),
                ("extra-extra-large", 48, 262144, 32768, 8192),
            ]
        );
    }

    #[test]
    fn worker_counts_follow_foremanctls_formulas_at_each_profiles_host() {
        let counts: Vec<(u32, u32, u32, u32)> = PROFILES
            .iter()
            .map(|p| {
                (
                    p.puma_workers(),
                    p.pulp_workers(),
                    p.pulp_api_workers(),
                    p.pulp_content_workers(),
                )
            })
            .collect();
        // puma min(32, 1.5 × cores, GiB − 1.5): development min(32, 6, 8.5) = 6, medium
        // min(32, 12, 30.5) = 12, large 24, then the cap of 32.
        assert_eq!(
            counts,
            vec![
                (6, 4, 5, 9),
                (6, 4, 5, 9),
                (12, 8, 5, 17),
                (24, 8, 5, 17),
                (32, 8, 5, 17),
                (32, 8, 5, 17),
            ]
        );
        // The memory term wins on a small host: 2 cores → 3, 3 GiB → min(3, 1.5) = 1.
        let small = Profile {
            cpu_cores: 2,
            memory_mib: 3072,
            ..PROFILES[0]
        };
        assert_eq!(small.puma_workers(), 1);
    }

    #[test]
    fn candlepin_heap_comes_from_the_profile() {
        assert_eq!(
            Profile::of(Tuning::Default).candlepin_java_opts(),
            "-Xms1024m -Xmx4096m -Dcom.redhat.fips=false"
        );
        assert_eq!(
            Profile::of(Tuning::ExtraLarge).candlepin_java_opts(),
            "-Xms1024m -Xmx8192m -Dcom.redhat.fips=false"
        );
        // The container's limit leaves the JVM room beyond the heap.
        let limit = resources(&spec(Tuning::ExtraLarge, 2, true, true), Sized::Candlepin);
        assert_eq!(limit.limits.unwrap()["memory"].0, "9216Mi");
    }

    #[test]
    fn requirements_sum_every_running_pod_and_the_host_services() {
        let r = requirements(&spec(Tuning::Default, 2, true, true));
        // Counted by hand from the rendered Deployments is what `pod_requests` does; here the
        // sum must at least hold the puma master and workers, two Dynflow workers, Candlepin's
        // heap floor and the four Pulp workers.
        let floor = (768 + 6 * 384 + 2 * 1024 + 1536 + 4 * 384) * MIB;
        assert!(r.pods_memory_bytes > floor, "{r:?}");
        assert_eq!(r.postgres_memory_bytes, (512 + 1024) * MIB);
        assert_eq!(r.k3s_memory_bytes, 1596 * MIB);
        assert_eq!(
            r.memory_bytes(),
            r.pods_memory_bytes + r.postgres_memory_bytes + r.k3s_memory_bytes
        );
        assert_eq!(r.cpu_millis(), r.pods_cpu_millis + 200);
    }

    #[test]
    fn each_dynflow_worker_adds_one_worker_pod() {
        let one = requirements(&spec(Tuning::Default, 1, true, true));
        let five = requirements(&spec(Tuning::Default, 5, true, true));
        assert_eq!(five.pods_memory_bytes - one.pods_memory_bytes, 4 * GIB);
        assert_eq!(five.pods_cpu_millis - one.pods_cpu_millis, 4 * 200);
    }

    #[test]
    fn plugins_add_their_pods() {
        let core = requirements(&spec(Tuning::Default, 2, false, false));
        let katello = requirements(&spec(Tuning::Default, 2, true, false));
        let rex = requirements(&spec(Tuning::Default, 2, false, true));
        assert!(katello.pods_memory_bytes > core.pods_memory_bytes + 4 * GIB);
        assert_eq!(rex.pods_memory_bytes - core.pods_memory_bytes, 256 * MIB);
    }

    #[test]
    fn the_default_resource_fits_the_default_profile_and_32_workers_do_not() {
        assert_eq!(check_profile(&spec(Tuning::Default, 2, true, true)), Ok(()));
        let err = check_profile(&spec(Tuning::Default, 32, true, true)).unwrap_err();
        assert!(
            err.starts_with("`spec.dynflow_workers` is 32: Foreman with Katello and Remote Execution with 32 Dynflow workers requests "),
            "{err}"
        );
        assert!(
            err.contains("default tuning profile's host (4 cores, 20.0 GiB)"),
            "{err}"
        );
        assert!(err.contains("help: lower spec.dynflow_workers, or set spec.tuning to a larger profile (large, extra-large, extra-extra-large)"), "{err}");
        assert_eq!(check_profile(&spec(Tuning::Large, 32, true, true)), Ok(()));
    }

    #[test]
    fn a_profiles_bound_is_the_last_worker_count_that_fits_its_host() {
        for p in PROFILES {
            for (katello, rex) in [(false, false), (false, true), (true, false), (true, true)] {
                let s = spec(p.tuning, 1, katello, rex);
                let bound = profile_bound(&s);
                let fits = |w: u32| {
                    let r = requirements(&spec(p.tuning, w, katello, rex));
                    r.cpu_millis() <= u64::from(p.cpu_cores) * 1000
                        && r.memory_bytes() <= p.memory_mib * MIB
                };
                if bound > 0 {
                    assert!(fits(bound), "{p:?} {katello} {rex}: {bound} should fit");
                }
                if bound < crate::crd::MAX_DYNFLOW_WORKERS {
                    assert!(
                        !fits(bound + 1),
                        "{p:?} {katello} {rex}: {} should not fit",
                        bound + 1
                    );
                }
            }
        }
    }

    #[test]
    fn every_profile_runs_the_seed_resource_but_development_only_foreman() {
        // The seed example (2 workers) fits every profile's own host with any plugins, except
        // the development profile's 10 GiB, where FC's six puma workers leave room for plain
        // Foreman only.
        for p in PROFILES {
            for (katello, rex) in [(false, false), (false, true), (true, false), (true, true)] {
                let ok = check_profile(&spec(p.tuning, 2, katello, rex)).is_ok();
                let want = p.tuning != Tuning::Development || !(katello || rex);
                assert_eq!(ok, want, "{:?} katello {katello} rex {rex}", p.tuning);
            }
        }
    }

    #[test]
    fn quantities_in_every_form_kubernetes_writes_them() {
        assert_eq!(parse_quantity("250m", true), Some(250));
        assert_eq!(parse_quantity("2", true), Some(2000));
        assert_eq!(parse_quantity("512Mi", false), Some(512 * MIB));
        assert_eq!(parse_quantity("1Gi", false), Some(GIB));
        assert_eq!(parse_quantity("1G", false), Some(1_000_000_000));
        assert_eq!(parse_quantity("1024", false), Some(1024));
        assert_eq!(parse_quantity("0.5", true), None);
        assert_eq!(parse_quantity("1Mi", true), None);
        assert_eq!(parse_quantity("Mi", false), None);
    }

    #[test]
    fn a_pod_requests_the_larger_of_its_containers_and_its_largest_init_container() {
        let pod: PodSpec = serde_json::from_value(json!({
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "900m", "memory": "64Mi"}}}],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}}},
                {"name": "c"},
            ],
        }))
        .unwrap();
        assert_eq!(pod_requests(&pod), (900, GIB));
    }
}
