//! The offline bundle for real: `foreman-box images` against the operator's renders; `bundle
//! create` from a real registry (Debian's docker-registry on loopback, images built and pushed
//! here under the pinned names) and a loopback k3s release mirror; every blob checked against
//! the registry and an independent reader (skopeo); the image archive imported by a real
//! containerd and run by digest; kill -9 at random moments and at every rename/fsync, then
//! resumed to the same bytes; a tampered or cut bundle refused by `bundle verify`.

use foreman_box_bundle::archive::{Bundle, Manifest};
use foreman_box_bundle::progress::NoProgress;
use foreman_box_tests::containerd::Containerd;
use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::registry::{sha256, Pushed, Registry};
use foreman_box_tests::{artifact, foreman_box, run, sha256_hex};
use foreman_operator::images::{Component, Table};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const WIRE: &str = "v1.33.5%2Bk3s1";
const STREAM: &str = "3.18";

/// `images --output json` for one stream: the references, with what needs each.
fn listed_images(stream: &str) -> Vec<(String, String)> {
    let out = run(&mut foreman_box(&[
        "images", "--stream", stream, "--output", "json",
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    doc["streams"][stream]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["reference"].as_str().unwrap().to_string(),
                r["needed_by"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Every `image:` of `operator render` for a resource with these plugins.
fn rendered_images(stream: &str, katello: bool, rex: bool) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("foreman.yaml");
    std::fs::write(
        &file,
        format!("apiVersion: app.theforeman.org/v1alpha1\nkind: Foreman\nmetadata: {{name: foreman, namespace: foreman}}\nspec:\n  version: \"{stream}\"\n  hostname: foreman.example.test\n  plugins: {{katello: {katello}, remote_execution: {rex}}}\n"),
    )
    .unwrap();
    let out = run(&mut foreman_box(&[
        "operator",
        "render",
        file.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}", out.all());
    out.stdout
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix("image: "))
        .map(|i| i.trim_matches(['\'', '"']).to_string())
        .collect()
}

#[test]
fn images_lists_exactly_what_the_renders_use_for_every_stream_and_plugin_set() {
    for stream in foreman_operator::resources::STREAMS {
        let listed = listed_images(stream);
        let mut all = BTreeSet::new();
        for (katello, rex) in [(false, false), (true, false), (false, true), (true, true)] {
            let rendered = rendered_images(stream, katello, rex);
            let expected: BTreeSet<String> = listed
                .iter()
                .filter(|(_, needed)| match needed.as_str() {
                    "always" => true,
                    "katello" => katello,
                    "remote_execution" => rex,
                    other => panic!("needed_by {other}"),
                })
                .map(|(r, _)| r.clone())
                .collect();
            assert_eq!(
                rendered, expected,
                "stream {stream}, katello {katello}, remote_execution {rex}"
            );
            all.extend(rendered);
        }
        let every: BTreeSet<String> = listed.into_iter().map(|(r, _)| r).collect();
        assert_eq!(
            all, every,
            "stream {stream}: every listed image is rendered by some plugin set"
        );
    }
}

#[test]
fn images_says_which_entries_have_no_digest_and_never_shows_a_moving_tag() {
    let out = run(&mut foreman_box(&["images"]));
    assert_eq!(out.code, 0, "{}", out.all());
    let table = Table::builtin();
    let unpinned = table
        .streams
        .values()
        .flatten()
        .filter(|p| !p.is_pinned())
        .count();
    if unpinned > 0 {
        assert!(out.stdout.contains("no digest yet"), "{}", out.stdout);
        assert!(
            out.stdout.contains("scripts/pin-images.sh"),
            "{}",
            out.stdout
        );
    }
    for p in table.streams.values().flatten() {
        assert_ne!(p.tag, "latest", "{} is a moving tag", p.reference());
    }
}

/// A registry holding a test image under every pinned name of the stream, the table naming
/// them by digest, and a k3s release on a loopback mirror.
struct World {
    registry: Registry,
    mirror: Mirror,
    table: PathBuf,
    pushed: BTreeMap<Component, Pushed>,
    _dir: tempfile::TempDir,
}

fn world() -> World {
    let registry = Registry::start().unwrap_or_else(|why| panic!("{why}"));
    let dir = tempfile::tempdir().unwrap();
    let builtin = Table::builtin();
    let mut pins = Vec::new();
    let mut pushed = BTreeMap::new();
    for c in Component::ALL {
        let mut pin = builtin.pin(STREAM, c).unwrap().clone();
        let path = pin.repository.split_once('/').unwrap().1.to_string();
        // Two of them multi-platform, as the real ones are: the bundle keeps the index and the
        // amd64 manifest only.
        let index = matches!(c, Component::Foreman | Component::Redis);
        let p = registry.push_test_image(&path, &pin.tag, c.name(), index);
        pin.digest = Some(p.digest.clone());
        pin.source = "pushed by the test".into();
        pins.push(pin);
        pushed.insert(c, p);
    }
    let table = dir.path().join("images.json");
    std::fs::write(
        &table,
        serde_json::to_vec(&serde_json::json!({"streams": {STREAM: pins}})).unwrap(),
    )
    .unwrap();
    let mirror = Mirror::start();
    let binary = artifact(700_000, 11);
    let airgap = artifact(400_000, 12);
    let sums = format!(
        "{}  k3s\n{}  k3s-airgap-images-amd64.tar.zst\n",
        sha256_hex(&binary),
        sha256_hex(&airgap)
    );
    mirror.put(&format!("/{WIRE}/k3s"), binary);
    mirror.put(&format!("/{WIRE}/k3s-airgap-images-amd64.tar.zst"), airgap);
    mirror.put(&format!("/{WIRE}/sha256sum-amd64.txt"), sums.into_bytes());
    World {
        registry,
        mirror,
        table,
        pushed,
        _dir: dir,
    }
}

impl World {
    fn create(&self, out: &Path) -> std::process::Command {
        self.create_with(out, Path::new("/bin/busybox"))
    }

    /// `bundle create` carrying `binary` as its foreman-box.
    fn create_with(&self, out: &Path, binary: &Path) -> std::process::Command {
        let reg = self.registry.url();
        foreman_box(&[
            "bundle",
            "create",
            "-o",
            out.to_str().unwrap(),
            "--images",
            self.table.to_str().unwrap(),
            "--registry-mirror",
            &format!("quay.io={reg}"),
            "--registry-mirror",
            &format!("docker.io={reg}"),
            "--binary",
            binary.to_str().unwrap(),
            "--k3s-release-url",
            &self.mirror.url(),
            "--downloads-retry-delay-ms",
            "10",
        ])
    }
}

fn member_bytes(bundle: &Bundle, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    bundle
        .member(name)
        .unwrap()
        .copy_verified(&mut out)
        .unwrap();
    out
}

#[test]
fn bundle_from_a_real_registry_holds_every_blob_the_registry_serves_and_skopeo_reads_it() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("foreman-box-bundle.tar");
    let made = run(&mut w.create(&out));
    assert_eq!(made.code, 0, "{}\n{}", made.all(), w.registry.log());
    assert!(
        made.stdout
            .contains(&sha256_hex(&std::fs::read(&out).unwrap())),
        "{}",
        made.stdout
    );
    assert!(
        !dir.path().join("foreman-box-bundle.tar.work").exists(),
        "work dir removed"
    );

    let verify = run(&mut foreman_box(&[
        "bundle",
        "verify",
        out.to_str().unwrap(),
    ]));
    assert_eq!(verify.code, 0, "{}", verify.all());
    let bundle = Bundle::open(&out, &NoProgress).unwrap();
    let m: &Manifest = bundle.manifest();
    assert_eq!((m.arch.as_str(), m.stream.as_str()), ("amd64", STREAM));
    assert_eq!(
        member_bytes(&bundle, "foreman-box"),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        member_bytes(&bundle, "install.sh"),
        foreman_box_bundle::INSTALL_SH.as_bytes()
    );
    let mut k3s = Vec::new();
    bundle.k3s_binary().copy_verified(&mut k3s).unwrap();
    assert_eq!(k3s, artifact(700_000, 11));

    // The image archive: every blob is the registry's, by digest; the arm64 manifests and
    // configs of the two indexes are not carried.
    let archive_path = dir.path().join("images.tar");
    let mut f = std::fs::File::create(&archive_path).unwrap();
    bundle.image_archive().copy_verified(&mut f).unwrap();
    drop(f);
    let mut held = BTreeMap::new();
    for e in tar::Archive::new(std::fs::File::open(&archive_path).unwrap())
        .entries()
        .unwrap()
    {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            held.insert(format!("sha256:{hex}"), data);
        }
    }
    let mut expected = BTreeSet::new();
    for (c, p) in &w.pushed {
        for (digest, bytes) in &p.blobs {
            if p.other_platforms.contains(digest) {
                assert!(!held.contains_key(digest), "{c:?}: arm64 {digest} carried");
                continue;
            }
            expected.insert(digest.clone());
            let got = held
                .get(digest)
                .unwrap_or_else(|| panic!("{c:?}: {digest} missing"));
            assert_eq!(got, bytes, "{c:?} {digest}");
            assert_eq!(
                &w.registry.get_blob(&p.path, digest),
                bytes,
                "the registry serves the same"
            );
            assert_eq!(sha256(got), *digest);
        }
    }
    assert_eq!(held.keys().cloned().collect::<BTreeSet<_>>(), expected);

    // An independent reader: skopeo finds every image by its tag name and by its digest name,
    // and names the same manifest the registry serves.
    for entry in &m.images {
        for name in [&entry.tag_name, &entry.digest_name] {
            let out = std::process::Command::new("skopeo")
                .args(["inspect", "--raw"])
                .arg(format!("oci-archive:{}:{name}", archive_path.display()))
                .output()
                .expect("skopeo runs (scripts/test.sh installs it)");
            assert!(
                out.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let want = entry.reference.split_once('@').unwrap().1;
            assert_eq!(sha256(&out.stdout), want, "skopeo's {name}");
        }
        let out = std::process::Command::new("skopeo")
            .args(["inspect", "--override-arch", "amd64"])
            .arg(format!(
                "oci-archive:{}:{}",
                archive_path.display(),
                entry.tag_name
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["Architecture"], "amd64");
        assert_eq!(doc["Layers"].as_array().unwrap().len(), 2, "{doc:#}");
    }
}

#[test]
fn containerd_imports_the_bundle_archive_and_runs_each_image_by_digest() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.tar");
    let made = run(&mut w.create(&out));
    assert_eq!(made.code, 0, "{}", made.all());
    let bundle = Bundle::open(&out, &NoProgress).unwrap();
    let archive_path = dir.path().join("images.tar");
    let mut f = std::fs::File::create(&archive_path).unwrap();
    bundle.image_archive().copy_verified(&mut f).unwrap();
    drop(f);

    let containerd = Containerd::start().unwrap_or_else(|why| panic!("{why}"));
    let import = containerd.ctr(&[
        "images",
        "import",
        "--no-unpack",
        archive_path.to_str().unwrap(),
    ]);
    assert!(
        import.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&import.stderr),
        containerd.log()
    );
    let names = containerd.ctr(&["images", "ls", "-q"]);
    let names: BTreeSet<String> = String::from_utf8_lossy(&names.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for entry in &bundle.manifest().images {
        assert!(
            names.contains(&entry.tag_name),
            "{} not in {names:?}",
            entry.tag_name
        );
        assert!(
            names.contains(&entry.digest_name),
            "{} not in {names:?}",
            entry.digest_name
        );
        let id = format!("run-{}", entry.component);
        let ran = containerd.ctr(&[
            "run",
            "--rm",
            "--snapshotter",
            "native",
            &entry.digest_name,
            &id,
        ]);
        assert!(
            ran.status.success(),
            "ctr run {}: {}\n{}",
            entry.digest_name,
            String::from_utf8_lossy(&ran.stderr),
            containerd.log()
        );
        assert_eq!(String::from_utf8_lossy(&ran.stdout), entry.component);
    }
}

/// Runs `bundle create` and SIGKILLs it after `delay`; the next run continues. Whether the kill
/// cut the run (it was still running).
fn killed_after(w: &World, out: &Path, delay: Duration) -> bool {
    let mut child = w
        .create(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let cut = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    cut
}

#[test]
fn kill_9_at_random_moments_and_at_every_rename_and_fsync_then_resume_gives_the_same_bytes() {
    let w = world();
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = reference_dir.path().join("b.tar");
    let started = std::time::Instant::now();
    let made = run(&mut w.create(&reference));
    assert_eq!(made.code, 0, "{}", made.all());
    // Kills land within the first 80% of an uncut run's time on this machine (fetching k3s, the
    // blobs, writing the bundle), however fast or loaded it is.
    let window = (started.elapsed().as_millis() as u64 * 4 / 5).max(20);
    let want = std::fs::read(&reference).unwrap();

    // Deterministic seeds: each kill lands somewhere in that window, each time after the
    // earlier kills' leftovers.
    let mut seed: u64 = 0x5eed_b0d1e;
    let mut interrupted = 0;
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.tar");
        let mut cut = false;
        for _ in 0..3 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let ms = (seed >> 33) % window;
            cut |= killed_after(&w, &out, Duration::from_millis(ms));
        }
        interrupted += u32::from(cut);
        // A kill that came after the run had finished leaves the bundle and no work dir: that
        // bundle is checked as it is (a new run would rightly refuse to overwrite it).
        let work = dir.path().join("b.tar.work");
        if work.exists() || !out.exists() {
            let done = run(&mut w.create(&out));
            assert_eq!(done.code, 0, "round {round}: {}", done.all());
        }
        assert!(
            std::fs::read(&out).unwrap() == want,
            "round {round}: other bytes"
        );
        assert!(!dir.path().join("b.tar.work").exists());
    }

    assert!(
        interrupted >= 10,
        "only {interrupted} of 20 rounds were cut before the end"
    );

    // The crash seam: abort at each rename/fsync/removal in turn (before and after it), then
    // resume, until a run passes every point.
    let mut point = 1;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.tar");
        let crashed = run(w
            .create(&out)
            .env(foreman_box_bundle::CRASH_ENV, point.to_string()));
        if crashed.code == 0 {
            assert!(point > 5, "the seam was reached {point} times only");
            break;
        }
        // The last points come after the work dir is gone: the bundle is whole already.
        if dir.path().join("b.tar.work").exists() || !out.exists() {
            let done = run(&mut w.create(&out));
            assert_eq!(done.code, 0, "after crash point {point}: {}", done.all());
        }
        assert!(
            std::fs::read(&out).unwrap() == want,
            "crash point {point}: other bytes"
        );
        point += 1;
        assert!(point < 500, "the seam never stops crashing");
    }
}

#[test]
fn bundle_verify_refuses_a_flipped_byte_in_any_member_and_a_cut_file_naming_it() {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.tar");
    let made = run(&mut w.create(&out));
    assert_eq!(made.code, 0, "{}", made.all());
    let good = std::fs::read(&out).unwrap();
    let bundle = Bundle::open(&out, &NoProgress).unwrap();
    let members: Vec<(String, u64, u64)> = bundle
        .manifest()
        .members
        .iter()
        .map(|m| {
            let r = bundle.member(&m.path).unwrap();
            (m.path.clone(), r.offset(), r.size())
        })
        .collect();
    let bad = dir.path().join("bad.tar");
    for (name, offset, size) in members.iter().filter(|(_, _, s)| *s > 0) {
        for at in [*offset, offset + size / 2, offset + size - 1] {
            let mut bytes = good.clone();
            bytes[at as usize] ^= 0x01;
            std::fs::write(&bad, &bytes).unwrap();
            let v = run(&mut foreman_box(&[
                "bundle",
                "verify",
                bad.to_str().unwrap(),
            ]));
            assert_eq!(v.code, 1, "{name} byte {at}: {}", v.all());
            assert!(
                v.stderr.contains(&format!("{name} of")),
                "{name}: {}",
                v.stderr
            );
            assert!(v.stderr.contains("help:"), "{}", v.stderr);
        }
    }
    for len in [good.len() / 2, good.len() - 1024, good.len() - 1] {
        std::fs::write(&bad, &good[..len]).unwrap();
        let v = run(&mut foreman_box(&[
            "bundle",
            "verify",
            bad.to_str().unwrap(),
        ]));
        assert_eq!(v.code, 1, "{}", v.all());
        assert!(v.stderr.contains("cut short"), "cut at {len}: {}", v.stderr);
    }
}

#[test]
fn pin_images_sh_records_the_digests_a_registry_serves_through_jq() {
    let registry = Registry::start().unwrap_or_else(|why| panic!("{why}"));
    let host = format!("127.0.0.1:{}", registry.port);
    let a = registry.push_test_image("foreman/foreman", "3.18", "foreman", true);
    let b = registry.push_test_image("foreman/pulp", "foreman-3.18", "pulp", false);
    // The shipped table with its repositories moved to the loopback registry and every digest
    // cleared; two of them pushed there.
    let mut table = Table::builtin().clone();
    table.streams.retain(|s, _| s == STREAM);
    for p in table.streams.get_mut(STREAM).unwrap() {
        let path = p.repository.split_once('/').unwrap().1.to_string();
        p.repository = format!("{host}/{path}");
        p.digest = None;
    }
    let pushed_only: Vec<_> = [Component::Foreman, Component::Pulp].into();
    for p in table.streams.get_mut(STREAM).unwrap() {
        if !pushed_only.contains(&p.component) {
            // Not on this registry: the script must stop, naming it, and change nothing.
            p.repository = format!("{host}/absent/{}", p.component.name());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("images.json");
    let text = serde_json::to_string_pretty(&table).unwrap();
    std::fs::write(&file, &text).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pin-images.sh");
    let sh = |args: &[&str]| {
        run(std::process::Command::new("sh")
            .arg(&script)
            .args(args)
            .env("PIN_IMAGES_TLS_VERIFY", "false"))
    };
    let check = sh(&["--check", file.to_str().unwrap()]);
    assert_eq!(check.code, 1, "{}", check.all());
    let failed = sh(&[file.to_str().unwrap()]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.stderr.contains("absent/"), "{}", failed.stderr);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "nothing half-written"
    );

    table
        .streams
        .get_mut(STREAM)
        .unwrap()
        .retain(|p| pushed_only.contains(&p.component));
    // A table of two entries is not a usable table for the operator; the script does not care.
    std::fs::write(&file, serde_json::to_string_pretty(&table).unwrap()).unwrap();
    let done = sh(&[file.to_str().unwrap()]);
    assert_eq!(done.code, 0, "{}", done.all());
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for p in written["streams"][STREAM].as_array().unwrap() {
        let want = if p["component"] == "foreman" {
            &a.digest
        } else {
            &b.digest
        };
        assert_eq!(p["digest"].as_str(), Some(want.as_str()), "{p}");
    }
    let check = sh(&["--check", file.to_str().unwrap()]);
    assert_eq!(check.code, 0, "{}", check.all());
}

/// Every file and symlink under `root` (not the run's log and lock), with its mode and bytes (a
/// symlink: its target). Stat stamps record inodes and times, so only their presence counts.
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if foreman_box_tests::is_run_record(&rel) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = if meta.file_type().is_symlink() {
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if rel.extension().is_some_and(|e| e == "stamp") {
                Vec::new()
            } else {
                std::fs::read(&path).unwrap()
            };
            out.insert(rel, (foreman_box_tests::mode(&path), bytes));
        }
    }
    out
}

/// `foreman-box VERB` of the k3s step under ROOT from BUNDLE, inside a network namespace that
/// holds only loopback (and no release URL but the default, which is unreachable there).
fn offline(verb: &str, root: &Path, bundle: &Path) -> std::process::Command {
    let mut inner = foreman_box(&[verb, "--root", root.to_str().unwrap()]);
    inner.args(foreman_box_tests::K3S_ONLY).args([
        "--bundle",
        bundle.to_str().unwrap(),
        "--downloads-retries",
        "0",
        "--downloads-connect-timeout-secs",
        "2",
    ]);
    let mut cmd = std::process::Command::new("unshare");
    cmd.arg("--net")
        .arg(inner.get_program())
        .args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}

#[test]
fn install_from_the_bundle_with_no_network_reaches_the_networked_tree_and_a_flipped_byte_changes_nothing(
) {
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.tar");
    let made = run(&mut w.create(&out));
    assert_eq!(made.code, 0, "{}", made.all());
    let bundle = Bundle::open(&out, &NoProgress).unwrap();

    // The networked install, from the loopback mirror, with k3s's airgap images as a bundle
    // install places them.
    let networked = foreman_box_tests::debian_root();
    let mut cmd = foreman_box_tests::k3s_only("install", networked.path(), &w.mirror.url());
    cmd.arg("--k3s-airgap-images");
    let t = std::time::Instant::now();
    let net = run(&mut cmd);
    let net_secs = t.elapsed().as_secs_f64();
    assert_eq!(net.code, 0, "{}", net.all());

    // The same from the bundle, with no network at all. The mirror sees no request.
    let requests = w.mirror.requests().len();
    let root = foreman_box_tests::debian_root();
    let t = std::time::Instant::now();
    let inst = run(&mut offline("install", root.path(), &out));
    let bundle_secs = t.elapsed().as_secs_f64();
    assert_eq!(inst.code, 0, "{}", inst.all());
    assert_eq!(
        w.mirror.requests().len(),
        requests,
        "the bundle install used the mirror"
    );
    eprintln!("networked install {net_secs:.2}s, install --bundle {bundle_secs:.2}s");

    let mut got = tree(root.path());
    let archive = PathBuf::from("var/lib/rancher/k3s/agent/images")
        .join(foreman_box_bundle::archive::image_archive_file("amd64"));
    let (_, placed) = got.remove(&archive).expect("the image archive is placed");
    assert_eq!(
        placed,
        member_bytes(&bundle, &bundle.manifest().image_archive)
    );
    let want = tree(networked.path());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the bundle install and the networked install left other files"
    );
    for (path, v) in &want {
        assert!(got[path] == *v, "{} differs", path.display());
    }
    assert_eq!(
        std::fs::read(root.path().join("usr/local/bin/k3s")).unwrap(),
        member_bytes(&bundle, &bundle.manifest().k3s.binary)
    );

    // A re-run with the same bundle changes nothing, and plan says so.
    let before = foreman_box_tests::tree_mtimes(root.path());
    let again = run(&mut offline("install", root.path(), &out));
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stdout.contains("up to date, nothing changed"),
        "{}",
        again.stdout
    );
    let plan = run(&mut offline("plan", root.path(), &out));
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("k3s: up to date"), "{}", plan.stdout);
    assert_eq!(foreman_box_tests::tree_mtimes(root.path()), before);

    // One flipped byte in the image archive: refused naming it, before anything is written,
    // on a fresh host and on the installed one.
    let m = bundle.image_archive();
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[(m.offset() + m.size() / 2) as usize] ^= 0x01;
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    // A cut bundle: refused the same way.
    let cut = dir.path().join("cut.tar");
    let good = std::fs::read(&out).unwrap();
    std::fs::write(&cut, &good[..good.len() - 4096]).unwrap();
    let fresh = foreman_box_tests::debian_root();
    for r in [fresh.path(), root.path()] {
        for (file, says) in [
            (&bad, format!("{} of", m.name())),
            (&cut, "cut short".into()),
        ] {
            let before = tree(r);
            let mtimes = foreman_box_tests::tree_mtimes(r);
            let refused = run(&mut offline("install", r, file));
            assert_eq!(refused.code, 1, "{}", refused.all());
            assert!(refused.stderr.contains(&says), "{}", refused.stderr);
            assert_eq!(tree(r), before, "a bad bundle changed the host");
            assert_eq!(foreman_box_tests::tree_mtimes(r), mtimes);
        }
    }

    // Another k3s version asked for explicitly than the bundle carries: refused, nothing changed.
    let mut other = offline("install", fresh.path(), &out);
    other.args(["--k3s-version", "v1.32.1+k3s1"]);
    let refused = run(&mut other);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stderr.contains("k3s v1.33.5+k3s1") && refused.stderr.contains("help:"),
        "{}",
        refused.stderr
    );
    assert!(!fresh.path().join("usr").exists());

    // A bundle for another platform, intact as such (its manifest and SHA256SUMS agree):
    // refused naming both platforms, nothing changed.
    let arm = dir.path().join("arm64.tar");
    std::fs::write(&arm, as_arm64(&good)).unwrap();
    let verified = run(&mut foreman_box(&[
        "bundle",
        "verify",
        arm.to_str().unwrap(),
    ]));
    assert_eq!(verified.code, 0, "{}", verified.all());
    let before = tree(fresh.path());
    let refused = run(&mut offline("install", fresh.path(), &arm));
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stderr.contains("linux/arm64")
            && refused.stderr.contains("linux/amd64")
            && refused.stderr.contains(
                "help: make one for this host with `foreman-box bundle create --arch amd64`"
            ),
        "{}",
        refused.stderr
    );
    assert_eq!(tree(fresh.path()), before);
}

/// The bytes of an amd64 bundle with its manifest saying arm64 and SHA256SUMS agreeing: what
/// verifies as an arm64 bundle (the members' lengths, and so the tar headers, are unchanged).
fn as_arm64(bundle: &[u8]) -> Vec<u8> {
    let find = |hay: &[u8], needle: &[u8]| {
        let at: Vec<usize> = hay
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 1, "{}", String::from_utf8_lossy(needle));
        at[0]
    };
    let mut bytes = bundle.to_vec();
    // manifest.json's tar header (512-byte blocks; the size is octal at 124..136).
    let header = (0..bytes.len())
        .step_by(512)
        .find(|&h| bytes[h..].starts_with(b"manifest.json\0"))
        .expect("the bundle has a manifest.json");
    let size = std::str::from_utf8(&bytes[header + 124..header + 135]).unwrap();
    let size = usize::from_str_radix(size.trim_matches(['\0', ' ']), 8).unwrap();
    let offset = header + 512;
    let old_sum = sha256_hex(&bytes[offset..offset + size]);
    let at = offset + find(&bytes[offset..offset + size], br#""arch": "amd64""#);
    bytes[at..at + 15].copy_from_slice(br#""arch": "arm64""#);
    let new_sum = sha256_hex(&bytes[offset..offset + size]);
    let at = find(&bytes, format!("{old_sum}  manifest.json").as_bytes());
    bytes[at..at + 64].copy_from_slice(new_sum.as_bytes());
    bytes
}

#[test]
fn install_sh_given_a_bundle_installs_its_binary_and_k3s_with_no_network_and_refuses_a_damaged_one()
{
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("b.tar");
    let made = run(&mut w.create_with(&out, foreman_box_tests::static_binary()));
    assert_eq!(made.code, 0, "{}", made.all());
    let bundle = Bundle::open(&out, &NoProgress).unwrap();
    let script = member_bytes(&bundle, "install.sh");
    std::fs::write(dir.path().join("install.sh"), &script).unwrap();

    // `sh install.sh --bundle FILE ARGS` as docs/bundle.md says, in a network namespace that
    // holds only loopback: the binary comes from the bundle and installs k3s from it.
    let sh = |bundle: &Path, bin: &Path, root: &Path| {
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["--net", "sh"])
            .arg(dir.path().join("install.sh"))
            .args(["--bundle", bundle.to_str().unwrap(), "--root"])
            .arg(root)
            .args(foreman_box_tests::K3S_ONLY)
            .env("FOREMAN_BOX_BIN_DIR", bin)
            .env("FOREMAN_BOX_COMPLETION_DIR", dir.path().join("completions"))
            .env("FOREMAN_BOX_MAN_DIR", dir.path().join("man1"))
            .env("TMPDIR", dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("FOREMAN_BOX_") && !k.ends_with("_DIR") {
                cmd.env_remove(k);
            }
        }
        run(&mut cmd)
    };
    let bin = dir.path().join("bin");
    let root = foreman_box_tests::debian_root();
    let done = sh(&out, &bin, root.path());
    assert_eq!(done.code, 0, "{}", done.all());
    assert!(
        done.stdout.contains("taking foreman-box from the bundle")
            && done.stdout.contains("sha256 verified against the bundle"),
        "{}",
        done.all()
    );
    assert_eq!(
        std::fs::read(bin.join("foreman-box")).unwrap(),
        member_bytes(&bundle, "foreman-box")
    );
    assert_eq!(
        std::fs::read(bin.join("foreman-box")).unwrap(),
        std::fs::read(foreman_box_tests::static_binary()).unwrap()
    );
    assert_eq!(
        std::fs::read(root.path().join("usr/local/bin/k3s")).unwrap(),
        member_bytes(&bundle, &bundle.manifest().k3s.binary)
    );

    // A flipped byte in the bundle's foreman-box: refused before anything is installed.
    let m = bundle.member("foreman-box").unwrap();
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[(m.offset() + m.size() / 2) as usize] ^= 0x01;
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let bin = dir.path().join("bin2");
    let root = foreman_box_tests::debian_root();
    let refused = sh(&bad, &bin, root.path());
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused
            .stderr
            .contains("does not match the bundle's SHA256SUMS")
            && refused.stderr.contains("nothing was installed"),
        "{}",
        refused.all()
    );
    assert!(
        !bin.exists(),
        "a binary was installed from a damaged bundle"
    );
    assert!(!root.path().join("usr/local/bin/k3s").exists());
}
