//! Pulp for real: the rendered Pulp pods (the migrate Job, `pulp-api`, `pulp-content`,
//! `pulp-worker`) run as local processes from pulpcore installed from PyPI, each with exactly its
//! container's command, environment, files, user and capabilities.
//!
//! How a container becomes a process:
//! - Command: `command` + `args` after Kubernetes' `$(VAR)` expansion. The image's wrapper
//!   scripts (`pulp-api`, `pulp-content`, `pulp-worker`) are not in pip's pulpcore, so
//!   [`image_wrapper`] turns them into the argv they `exec`, from the image's own ENV defaults
//!   ([`IMAGE_ENV`]) overridden by the container's env, as the image would.
//! - Environment: only the image's ENV, PATH (the venv's bin first) and the container's `env`,
//!   with `value`, `secretKeyRef` and `configMapKeyRef` resolved from the objects given (the
//!   render, the installer's manifests, the Secrets the controller generates). The only values
//!   changed are the ones that must point at this machine's loopback ([`Loopback::rewrite`]).
//! - Files: each volume is materialized (Secret and ConfigMap keys as files with their modes,
//!   emptyDir as an empty directory, a PersistentVolumeClaim as the hostPath of the
//!   PersistentVolume the installer's storage step wrote, inside its `--root`) and bind-mounted at
//!   its `mountPath` (and `subPath`) inside a private mount namespace (`unshare --mount`). Paths
//!   missing on this machine (`/etc/pulp`, `/var/lib/pulp`) appear through an overlay whose upper
//!   layer is a temp dir, so the real paths are used and the host is not touched.
//! - Security: `runAsUser`/`runAsGroup`/`fsGroup` become the process's uid, gid and groups,
//!   `capabilities.drop: [ALL]` empties its capability sets and `allowPrivilegeEscalation: false`
//!   sets no_new_privs (`setpriv`). A container without `runAsUser` runs as the image's user, root
//!   (the Pulp Containerfile has no USER line), and is refused under `runAsNonRoot` as the kubelet
//!   would refuse it.
//!
//! Not emulated: the network namespace (the processes share this machine's, so the image's fixed
//! ports 24817 and 24816 must be free), `readOnlyRootFilesystem`, seccomp, resource limits, probes.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pulpcore of Foreman 3.18's Pulp image: foremanctl 2.0.0 (= Foreman 3.18) README says
/// "Pulp 3.85"; theforeman/pulp-oci-images images/pulp/Containerfile installs pulpcore from
/// yum.theforeman.org/pulpcore/3.85. 3.85.34 is the newest 3.85.z on PyPI. scripts/test.sh
/// installs it (keep the two in step).
pub const PULPCORE_VERSION: &str = "3.85.34";
/// Where scripts/test.sh puts the venv, unless this variable names another.
pub const VENV_VAR: &str = "FOREMAN_BOX_TESTS_PULP_VENV";
pub const DEFAULT_VENV: &str = "/var/cache/foreman-box-tests/pulp-venv";

/// The Pulp image's ENV: theforeman/pulp-oci-images images/pulp/Containerfile (master a750582,
/// the image of the Foreman 3.18 time; foremanctl 2.0.0 was tagged 2026-04-14).
pub const IMAGE_ENV: &[(&str, &str)] = &[
    ("PULP_GUNICORN_TIMEOUT", "90"),
    ("PULP_API_WORKERS", "2"),
    ("PULP_API_WORKERS_MAX_REQUESTS", "800"),
    ("PULP_API_WORKERS_MAX_REQUESTS_JITTER", "100"),
    ("PULP_CONTENT_WORKERS", "2"),
];
/// PATH of the image (quay.io/centos/centos:stream9 base); the venv's bin goes first, standing in
/// for the RPMs' /usr/bin/pulpcore-*.
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The image's user: the Containerfile has no USER line, so root.
const IMAGE_UID: u32 = 0;

/// The argv an image wrapper script execs, or None if `program` is not one of them. Sources:
/// theforeman/pulp-oci-images images/pulp/assets/{pulp-api,pulp-content,pulp-worker} at a750582.
/// The scripts run under `bash -eu` (an unset variable fails) and pass no arguments on.
pub fn image_wrapper(
    program: &str,
    env: &BTreeMap<String, String>,
) -> Option<Result<Vec<String>, String>> {
    let var = |name: &str| {
        env.get(name)
            .cloned()
            .ok_or_else(|| format!("{program}: {name}: unbound variable (bash -eu)"))
    };
    let argv = match program {
        "pulp-api" => (|| {
            Ok(vec![
                "pulpcore-api".into(),
                "--timeout".into(),
                var("PULP_GUNICORN_TIMEOUT")?,
                "--workers".into(),
                var("PULP_API_WORKERS")?,
                "--max-requests".into(),
                var("PULP_API_WORKERS_MAX_REQUESTS")?,
                "--max-requests-jitter".into(),
                var("PULP_API_WORKERS_MAX_REQUESTS_JITTER")?,
                "--access-logfile".into(),
                "-".into(),
                "--access-logformat".into(),
                r#"pulp [%({correlation-id}o)s]: %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#.into(),
            ])
        })(),
        "pulp-content" => (|| {
            Ok(vec![
                "pulpcore-content".into(),
                "--timeout".into(),
                var("PULP_GUNICORN_TIMEOUT")?,
                "--workers".into(),
                var("PULP_CONTENT_WORKERS")?,
                "--access-logfile".into(),
                "-".into(),
            ])
        })(),
        "pulp-worker" => Ok(vec!["pulpcore-worker".into()]),
        _ => return None,
    };
    Some(argv)
}

/// The venv scripts/test.sh installs. Panics, naming what is missing, if it is not there: this
/// test never skips.
pub fn venv() -> PathBuf {
    let dir = PathBuf::from(std::env::var(VENV_VAR).unwrap_or_else(|_| DEFAULT_VENV.into()));
    let manager = dir.join("bin/pulpcore-manager");
    assert!(
        manager.exists(),
        "pulpcore is not installed: {} is missing. scripts/test.sh installs pulpcore {PULPCORE_VERSION} \
         from PyPI into {DEFAULT_VENV} (or ${VENV_VAR}); run it, or see its error for why pip failed",
        manager.display()
    );
    let out = Command::new(dir.join("bin/python"))
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('pulpcore'))",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {}/bin/python: {e}", dir.display()));
    let found = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        found,
        PULPCORE_VERSION,
        "{} has pulpcore {found:?}, the test needs {PULPCORE_VERSION}; scripts/test.sh reinstalls it",
        dir.display()
    );
    dir
}

/// The objects of a multi-document YAML stream.
pub fn parse_objects(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// Values that must point at this machine instead of the cluster's Services; everything else the
/// processes get is the render's. The database host and port (the pulp-db Secret names the
/// in-cluster `postgres` Service) go to the throwaway PostgreSQL on 127.0.0.1, the Redis URL (the
/// in-cluster `redis` Service) to a throwaway Redis on 127.0.0.1, keeping its database number.
pub struct Loopback {
    pub db_port: u16,
    pub redis_port: u16,
}

impl Loopback {
    pub fn rewrite(&self, var: &str, value: &str) -> String {
        match var {
            "PULP_DATABASES__default__HOST" => "127.0.0.1".into(),
            "PULP_DATABASES__default__PORT" => self.db_port.to_string(),
            "PULP_REDIS_HOST" => "127.0.0.1".into(),
            "PULP_REDIS_PORT" => self.redis_port.to_string(),
            "PULP_REDIS_URL" => {
                // redis://[user:pass@]host:port/db -> same with 127.0.0.1:<port>.
                let (scheme, rest) = value.split_once("://").unwrap_or(("redis", value));
                let (auth_host, path) = rest.split_once('/').unwrap_or((rest, ""));
                let auth = auth_host
                    .rsplit_once('@')
                    .map(|(a, _)| format!("{a}@"))
                    .unwrap_or_default();
                format!("{scheme}://{auth}127.0.0.1:{}/{path}", self.redis_port)
            }
            _ => value.to_string(),
        }
    }
}

/// The objects a pod can read: the render, the installer's manifests, generated Secrets.
pub struct Cluster {
    pub objects: Vec<Value>,
    /// The installer's `--root`: hostPath volumes live under it.
    pub root: PathBuf,
}

impl Cluster {
    fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    }

    /// All keys of a Secret or ConfigMap, decoded.
    fn data(&self, kind: &str, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        use base64::Engine;
        let obj = self.get(kind, name).ok_or_else(|| {
            format!("{kind} {name} is not among the rendered, installed or generated objects")
        })?;
        let mut out = BTreeMap::new();
        if let Some(m) = obj["data"].as_object() {
            for (k, v) in m {
                let s = v.as_str().unwrap_or_default();
                let bytes = if kind == "Secret" {
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .map_err(|e| format!("{kind} {name} key {k}: not base64: {e}"))?
                } else {
                    s.as_bytes().to_vec()
                };
                out.insert(k.clone(), bytes);
            }
        }
        for field in ["stringData", "binaryData"] {
            if let Some(m) = obj[field].as_object() {
                for (k, v) in m {
                    let s = v.as_str().unwrap_or_default();
                    let bytes = if field == "binaryData" {
                        base64::engine::general_purpose::STANDARD
                            .decode(s)
                            .map_err(|e| format!("{kind} {name} key {k}: {e}"))?
                    } else {
                        s.as_bytes().to_vec()
                    };
                    out.insert(k.clone(), bytes);
                }
            }
        }
        Ok(out)
    }

    fn key(&self, kind: &str, name: &str, key: &str) -> Result<Vec<u8>, String> {
        self.data(kind, name)?
            .remove(key)
            .ok_or_else(|| format!("{kind} {name} has no key {key}"))
    }

    /// A claim's directory: PersistentVolumeClaim -> its bound PersistentVolume -> hostPath.
    fn claim_dir(&self, claim: &str) -> Result<PathBuf, String> {
        let pvc = self.get("PersistentVolumeClaim", claim).ok_or_else(|| {
            format!("PersistentVolumeClaim {claim} is not among the installed objects")
        })?;
        let pv_name = pvc["spec"]["volumeName"]
            .as_str()
            .ok_or_else(|| format!("PersistentVolumeClaim {claim} names no volumeName"))?;
        let pv = self
            .get("PersistentVolume", pv_name)
            .ok_or_else(|| format!("PersistentVolume {pv_name} (bound to {claim}) is missing"))?;
        let path = pv["spec"]["hostPath"]["path"]
            .as_str()
            .ok_or_else(|| format!("PersistentVolume {pv_name} is not a hostPath volume"))?;
        let dir = self.root.join(path.trim_start_matches('/'));
        if !dir.is_dir() {
            return Err(format!(
                "PersistentVolume {pv_name}'s hostPath {} does not exist",
                dir.display()
            ));
        }
        Ok(dir)
    }
}

/// One container as this harness runs it.
#[derive(Debug, Clone)]
pub struct Process {
    /// `<workload>/<container>`.
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// (source on this machine, path inside, read-only)
    pub mounts: Vec<(PathBuf, PathBuf, bool)>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub drop_all_caps: bool,
    pub no_new_privs: bool,
    pub ports: Vec<u16>,
}

/// A workload's pod: init containers (run to completion, in order) and containers.
pub struct Pod {
    pub init: Vec<Process>,
    pub containers: Vec<Process>,
}

/// Builds the processes of a workload's pod template (`Deployment` or `Job`).
pub fn pod(
    cluster: &Cluster,
    workload: &Value,
    venv: &Path,
    loopback: &Loopback,
    scratch: &Path,
) -> Result<Pod, String> {
    let wname = workload["metadata"]["name"].as_str().unwrap_or("?");
    let spec = &workload["spec"]["template"]["spec"];
    let pod_sc = &spec["securityContext"];
    let fs_group = pod_sc["fsGroup"].as_u64().map(|g| g as u32);

    // Volumes: materialized once per pod.
    let mut volumes: BTreeMap<String, PathBuf> = BTreeMap::new();
    for v in spec["volumes"].as_array().into_iter().flatten() {
        let vname = v["name"].as_str().unwrap_or_default().to_string();
        let dir = scratch.join(format!("{wname}-vol-{vname}"));
        let src = if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
            cluster
                .claim_dir(claim)
                .map_err(|e| format!("{wname}: volume {vname}: {e}"))?
        } else if v.get("emptyDir").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
            dir
        } else if let Some(s) = v.get("secret").filter(|s| s.is_object()) {
            let name = s["secretName"].as_str().unwrap_or_default();
            let data = cluster
                .data("Secret", name)
                .map_err(|e| format!("{wname}: volume {vname}: {e}"))?;
            write_projection(&dir, &data, s, fs_group)
                .map_err(|e| format!("{wname}: volume {vname} (Secret {name}): {e}"))?;
            dir
        } else if let Some(c) = v.get("configMap").filter(|c| c.is_object()) {
            let name = c["name"].as_str().unwrap_or_default();
            let data = cluster
                .data("ConfigMap", name)
                .map_err(|e| format!("{wname}: volume {vname}: {e}"))?;
            write_projection(&dir, &data, c, fs_group)
                .map_err(|e| format!("{wname}: volume {vname} (ConfigMap {name}): {e}"))?;
            dir
        } else {
            return Err(format!(
                "{wname}: volume {vname} is of a kind this harness does not materialize: {v}"
            ));
        };
        volumes.insert(vname, src);
    }

    let mut build = |c: &Value| -> Result<Process, String> {
        let cname = c["name"].as_str().unwrap_or("?");
        let name = format!("{wname}/{cname}");
        let sc = &c["securityContext"];
        let pick = |k: &str| sc[k].as_u64().or_else(|| pod_sc[k].as_u64());
        let uid = pick("runAsUser").map(|u| u as u32).unwrap_or(IMAGE_UID);
        let gid = pick("runAsGroup").map(|g| g as u32).unwrap_or(uid);
        let non_root = sc["runAsNonRoot"]
            .as_bool()
            .or_else(|| pod_sc["runAsNonRoot"].as_bool())
            .unwrap_or(false);
        if non_root && uid == 0 {
            return Err(format!(
                "{name}: runAsNonRoot is set but the container runs as root (no runAsUser, and the \
                 Pulp image has no USER line); the kubelet refuses to start it: \
                 \"container has runAsNonRoot and image will run as root\""
            ));
        }
        if sc["capabilities"]["add"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            return Err(format!(
                "{name}: capabilities.add is not emulated by this harness"
            ));
        }
        let drop_all_caps = sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        let no_new_privs = sc["allowPrivilegeEscalation"] == false;
        let mut groups: Vec<u32> = fs_group.into_iter().collect();
        for g in pod_sc["supplementalGroups"]
            .as_array()
            .into_iter()
            .flatten()
        {
            groups.extend(g.as_u64().map(|g| g as u32));
        }

        // Environment: image ENV, then the container's env in order ($(VAR) sees earlier ones).
        let mut env: BTreeMap<String, String> = IMAGE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert(
            "PATH".into(),
            format!("{}:{IMAGE_PATH}", venv.join("bin").display()),
        );
        env.insert("HOME".into(), if uid == 0 { "/root" } else { "/" }.into());
        for e in c["env"].as_array().into_iter().flatten() {
            let var = e["name"].as_str().unwrap_or_default();
            let raw = if let Some(v) = e["value"].as_str() {
                expand(v, &env)
            } else if let Some((kind, r)) =
                [("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")]
                    .into_iter()
                    .find_map(|(kind, field)| e["valueFrom"][field].as_object().map(|r| (kind, r)))
            {
                let found = cluster.key(
                    kind,
                    r["name"].as_str().unwrap_or_default(),
                    r["key"].as_str().unwrap_or_default(),
                );
                match found {
                    Ok(bytes) => String::from_utf8(bytes)
                        .map_err(|_| format!("{name}: env {var}: not UTF-8"))?,
                    // `optional: true`: the kubelet leaves the variable unset.
                    Err(_) if r.get("optional") == Some(&Value::Bool(true)) => continue,
                    Err(e) => return Err(format!("{name}: env {var}: {e}")),
                }
            } else if e.get("valueFrom").is_some() {
                return Err(format!(
                    "{name}: env {var}: this harness resolves value, secretKeyRef and configMapKeyRef only"
                ));
            } else {
                String::new()
            };
            env.insert(var.to_string(), loopback.rewrite(var, &raw));
        }
        if c.get("envFrom").is_some() {
            return Err(format!("{name}: envFrom is not emulated by this harness"));
        }

        // Command: the image has no ENTRYPOINT; CMD is the base image's /bin/bash.
        let mut cmd: Vec<String> = c["command"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| expand(s.as_str().unwrap_or_default(), &env))
            .collect();
        let args: Vec<String> = c["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| expand(s.as_str().unwrap_or_default(), &env))
            .collect();
        if cmd.is_empty() {
            return Err(format!(
                "{name}: no command; the Pulp image would run its CMD, /bin/bash"
            ));
        }
        let argv = match image_wrapper(&cmd[0], &env) {
            Some(wrapped) => {
                let wrapped = wrapped.map_err(|e| format!("{name}: {e}"))?;
                if cmd.len() > 1 || !args.is_empty() {
                    return Err(format!(
                        "{name}: the image's {} passes no arguments on, but the container gives {:?}",
                        cmd[0],
                        cmd[1..].iter().chain(&args).collect::<Vec<_>>()
                    ));
                }
                wrapped
            }
            None => {
                cmd.extend(args);
                cmd
            }
        };

        let mut mounts = Vec::new();
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let vname = m["name"].as_str().unwrap_or_default();
            let src = volumes
                .get(vname)
                .ok_or_else(|| format!("{name}: volumeMount {vname} names no volume of the pod"))?;
            let src = match m["subPath"].as_str() {
                Some(sub) if !sub.is_empty() => src.join(sub),
                _ => src.clone(),
            };
            if !src.exists() {
                return Err(format!(
                    "{name}: volumeMount {vname} subPath {:?} does not exist in the volume",
                    m["subPath"]
                ));
            }
            let target = PathBuf::from(m["mountPath"].as_str().unwrap_or_default());
            mounts.push((src, target, m["readOnly"] == true));
        }
        let ports = c["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["containerPort"].as_u64().map(|p| p as u16))
            .collect();
        Ok(Process {
            name,
            argv,
            env,
            mounts,
            uid,
            gid,
            groups,
            drop_all_caps,
            no_new_privs,
            ports,
        })
    };
    let init = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(&mut build)
        .collect::<Result<_, _>>()?;
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(&mut build)
        .collect::<Result<_, _>>()?;
    Ok(Pod { init, containers })
}

/// Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` is a literal `$`,
/// anything else stays as written.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(end) = tail.strip_prefix("$(").and_then(|t| t.find(')')) {
            let var = &tail[2..2 + end];
            match env.get(var) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..3 + end]),
            }
            rest = &tail[3 + end..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// A Secret or ConfigMap volume's files: every key (or the listed `items`), with the item's
/// `mode` or the volume's `defaultMode` (0644), owned by root and, with an fsGroup, by that group
/// with group read (what the kubelet does).
fn write_projection(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    source: &Value,
    fs_group: Option<u32>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let default_mode = source["defaultMode"].as_u64().unwrap_or(0o644) as u32;
    let items: Vec<(String, String, u32)> = match source["items"].as_array() {
        Some(items) => items
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap_or_default().to_string(),
                    i["path"].as_str().unwrap_or_default().to_string(),
                    i["mode"].as_u64().map(|m| m as u32).unwrap_or(default_mode),
                )
            })
            .collect(),
        None => data
            .keys()
            .map(|k| (k.clone(), k.clone(), default_mode))
            .collect(),
    };
    for (key, path, mode) in items {
        let bytes = data.get(&key).ok_or_else(|| format!("no key {key}"))?;
        let file = dir.join(&path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, bytes).unwrap();
        let mode = if fs_group.is_some() {
            mode | 0o040
        } else {
            mode
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        if let Some(g) = fs_group {
            nix::unistd::chown(&file, Some(0.into()), Some(g.into())).unwrap();
        }
    }
    Ok(())
}

/// Sets up the mount namespace and execs the rest. Operations come as arguments (never spliced
/// into the script): `overlay DIR UPPER WORK`, `bind SRC DST`, `ro DST`, then `--` and the argv.
const MOUNT_SCRIPT: &str = r#"set -eu
while [ "$1" != -- ]; do
    case "$1" in
    overlay) mount -t overlay overlay -o "lowerdir=$2,upperdir=$3,workdir=$4" "$2"; shift 4 ;;
    bind)
        if [ -d "$2" ]; then mkdir -p "$3"; else mkdir -p "$(dirname "$3")"; [ -e "$3" ] || : > "$3"; fi
        mount --bind "$2" "$3"; shift 3 ;;
    ro) mount -o remount,bind,ro "$2"; shift 2 ;;
    *) echo "pulp harness: unknown mount operation $1" >&2; exit 1 ;;
    esac
done
shift
exec "$@"
"#;

/// A started process, stopped (its whole process group) on drop.
pub struct Running {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Running {
    /// The last lines of its output, for failure messages.
    pub fn tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn stop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Workers that outlive their parent are in the same group: kill what is left.
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts `p` in its own mount namespace and process group; output goes to `<scratch>/logs/`.
pub fn spawn(p: &Process, scratch: &Path) -> Running {
    let logs = scratch.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join(format!("{}.log", p.name.replace('/', "-")));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut ops: Vec<String> = Vec::new();
    let overlay_root = scratch.join(format!("overlay-{}", p.name.replace('/', "-")));
    for (i, anchor) in overlay_anchors(p.mounts.iter().map(|m| m.1.as_path()))
        .iter()
        .enumerate()
    {
        let upper = overlay_root.join(format!("{i}/upper"));
        let work = overlay_root.join(format!("{i}/work"));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        for path in [anchor, &upper, &work] {
            assert!(
                !path.to_string_lossy().contains([',', ':']),
                "overlay options cannot hold {}",
                path.display()
            );
        }
        ops.extend([
            "overlay".into(),
            anchor.display().to_string(),
            upper.display().to_string(),
            work.display().to_string(),
        ]);
    }
    for (src, dst, _) in &p.mounts {
        ops.extend([
            "bind".into(),
            src.display().to_string(),
            dst.display().to_string(),
        ]);
    }
    for (_, dst, ro) in &p.mounts {
        if *ro {
            ops.extend(["ro".into(), dst.display().to_string()]);
        }
    }
    let mut setpriv: Vec<String> = vec!["setpriv".into()];
    if p.uid != 0 || p.gid != 0 {
        setpriv.extend([format!("--reuid={}", p.uid), format!("--regid={}", p.gid)]);
    }
    if p.groups.is_empty() {
        setpriv.push("--clear-groups".into());
    } else {
        let g: Vec<String> = p.groups.iter().map(u32::to_string).collect();
        setpriv.push(format!("--groups={}", g.join(",")));
    }
    if p.drop_all_caps {
        setpriv.extend(["--inh-caps=-all".into(), "--bounding-set=-all".into()]);
    }
    if p.no_new_privs {
        setpriv.push("--no-new-privs".into());
    }
    setpriv.push("--".into());

    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
        .arg(MOUNT_SCRIPT)
        .arg("pulp-harness")
        .args(&ops)
        .arg("--")
        .args(&setpriv)
        .args(&p.argv)
        .env_clear()
        .envs(&p.env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{}: cannot start unshare: {e}", p.name));
    Running {
        name: p.name.clone(),
        child,
        log,
    }
}

/// The directories to overlay so every mount target can be created without touching this
/// machine: the deepest existing ancestor of each missing target, shallowest first.
fn overlay_anchors<'a>(targets: impl Iterator<Item = &'a Path>) -> Vec<PathBuf> {
    let mut anchors: Vec<PathBuf> = Vec::new();
    for t in targets {
        if t.exists() {
            continue;
        }
        let anchor = t
            .ancestors()
            .skip(1)
            .find(|a| a.exists())
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        if !anchors.contains(&anchor) {
            anchors.push(anchor);
        }
    }
    anchors.sort_by_key(|a| a.components().count());
    anchors
}

/// Runs `p` to completion within `timeout`; Err with its exit and last output otherwise.
pub fn run_to_completion(p: &Process, scratch: &Path, timeout: Duration) -> Result<String, String> {
    let mut r = spawn(p, scratch);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = r.exited() {
            return if status.success() {
                Ok(r.tail(20))
            } else {
                Err(format!(
                    "{} exited with {status}; its last output:\n{}",
                    p.name,
                    r.tail(40)
                ))
            };
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not finish within {timeout:?}; its last output:\n{}",
                p.name,
                r.tail(40)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, while `r` keeps running.
pub fn wait_for_port(r: &mut Running, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = r.exited() {
            return Err(format!(
                "{} exited with {status} before listening on port {port}; its last output:\n{}",
                r.name,
                r.tail(40)
            ));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} did not listen on port {port} within {timeout:?}; its last output:\n{}",
                r.name,
                r.tail(40)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Fails if something on this machine already listens on `port` (the processes share its
/// network, and the image's ports are fixed).
pub fn require_free_port(port: u16) -> Result<(), String> {
    std::net::TcpListener::bind(("0.0.0.0", port))
        .map(drop)
        .map_err(|e| {
            format!(
                "port {port} is taken on this machine ({e}); the Pulp processes need it (the \
                 image's fixed port). Stop whatever listens there (`ss -ltnp 'sport = :{port}'`)"
            )
        })
}

/// A throwaway Redis (Debian's redis-server) on a free loopback port, no persistence.
pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("fb-redis-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); scripts/test.sh installs the redis-server package")
            });
        let mut redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if redis.ping() {
                return redis;
            }
            if let Some(status) = redis.child.try_wait().unwrap() {
                panic!(
                    "redis-server exited with {status}:\n{}",
                    tail(&redis._dir.path().join("log"), 20)
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on 127.0.0.1:{port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A multipart/form-data body of text fields and one file field (what Pulp's upload API takes).
pub fn multipart(fields: &[(&str, &str)], file: (&str, &str, &[u8])) -> (String, Vec<u8>) {
    // The content's own hash cannot occur in the content.
    let boundary = format!("foreman-box-{}", crate::sha256_hex(file.2));
    let mut body = Vec::new();
    for (k, v) in fields {
        let mut part = String::new();
        let _ = write!(
            part,
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        );
        body.extend_from_slice(part.as_bytes());
    }
    let (field, filename, bytes) = file;
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A)/$(B)/$$(A)/$", &env), "x/$(B)/$(A)/$");
    }

    #[test]
    fn loopback_rewrites_only_the_endpoints() {
        let lb = Loopback {
            db_port: 5433,
            redis_port: 7000,
        };
        assert_eq!(
            lb.rewrite("PULP_REDIS_URL", "redis://redis:6379/8"),
            "redis://127.0.0.1:7000/8"
        );
        assert_eq!(
            lb.rewrite("PULP_REDIS_URL", "rediss://:pw@redis.foreman.svc:6379/8"),
            "rediss://:pw@127.0.0.1:7000/8"
        );
        assert_eq!(lb.rewrite("PULP_DATABASES__default__PORT", "5432"), "5433");
        assert_eq!(
            lb.rewrite("PULP_CONTENT_ORIGIN", "https://f.example.com"),
            "https://f.example.com"
        );
    }

    #[test]
    fn wrapper_reads_the_image_env_and_fails_like_bash_on_an_unset_one() {
        let env: BTreeMap<String, String> = IMAGE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let argv = image_wrapper("pulp-content", &env).unwrap().unwrap();
        assert_eq!(
            argv[..5],
            ["pulpcore-content", "--timeout", "90", "--workers", "2"]
        );
        let err = image_wrapper("pulp-api", &BTreeMap::new())
            .unwrap()
            .unwrap_err();
        assert!(
            err.contains("PULP_GUNICORN_TIMEOUT: unbound variable"),
            "{err}"
        );
        assert!(image_wrapper("pulpcore-manager", &env).is_none());
    }

    #[test]
    fn overlay_anchor_is_the_deepest_existing_parent() {
        let anchors = overlay_anchors(
            [
                Path::new("/etc/fb-no-such/certs"),
                Path::new("/var/lib/fb-no-such"),
                Path::new("/tmp"),
            ]
            .into_iter(),
        );
        assert_eq!(anchors, [PathBuf::from("/etc"), PathBuf::from("/var/lib")]);
    }
}
