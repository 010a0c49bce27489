//! The operator step with the README's static binary: the image archive it makes of itself,
//! imported and run by a real containerd; re-runs that write nothing; a new binary that rolls the
//! reference; a dynamically linked build refused before anything is written.

use foreman_box_tests::containerd::Containerd;
use foreman_box_tests::{
    binary, debian_root, foreman_box, foreman_box_at, kubernetes_validate, run, static_binary,
    tree_mtimes, Run,
};
use std::path::{Path, PathBuf};

const ARCHIVE: &str = "var/lib/rancher/k3s/agent/images/foreman-box-operator.tar";
const IMAGES: &str = "var/lib/rancher/k3s/agent/images";
const MANIFESTS: &str = "var/lib/rancher/k3s/server/manifests";

fn install_operator(bin: &Path, root: &Path) -> Run {
    run(&mut foreman_box_at(
        bin,
        &[
            "install",
            "--root",
            root.to_str().unwrap(),
            "--only",
            "operator",
        ],
    ))
}

/// The image the written Deployment runs.
fn deployment_image(root: &Path) -> String {
    let text =
        std::fs::read_to_string(root.join(MANIFESTS).join("foreman-box-20-operator.yaml")).unwrap();
    let images: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .collect();
    assert_eq!(images.len(), 1, "one container image in\n{text}");
    images[0].trim_matches(['\'', '"']).to_string()
}

fn operator_archives(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(IMAGES))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("foreman-box-operator") && n.ends_with(".tar"))
        .collect();
    names.sort();
    names
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn all_of(out: &std::process::Output) -> String {
    format!(
        "status {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn static_binary_is_under_25_mib_and_needs_no_loader() {
    let bin = static_binary();
    let size = std::fs::metadata(bin).unwrap().len();
    assert!(size < 25 * 1024 * 1024, "{} is {size} bytes", bin.display());
    let head = std::fs::read(bin).unwrap();
    assert_eq!(
        foreman_box_bundle::elf::linking(&head[..64 * 1024]).unwrap(),
        foreman_box_bundle::elf::Linking::Static
    );
}

#[test]
fn containerd_imports_the_archive_and_runs_it_as_its_user_with_a_read_only_root() {
    let root = debian_root();
    let out = install_operator(static_binary(), root.path());
    assert_eq!(out.code, 0, "{}", out.all());
    let archive = root.path().join(ARCHIVE);
    let image = deployment_image(root.path());
    assert!(image.starts_with("foreman-box.local/operator:"), "{image}");

    let containerd = Containerd::start().unwrap_or_else(|why| panic!("{why}"));
    let import = containerd.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        archive.to_str().unwrap(),
    ]);
    assert!(
        import.status.success(),
        "ctr images import: {}\n{}",
        all_of(&import),
        containerd.log()
    );
    let names = containerd.ctr(&["images", "ls", "-q"]);
    assert_eq!(
        stdout_of(&names).lines().collect::<Vec<_>>(),
        [image.as_str()],
        "the archive's reference is the Deployment's image"
    );

    // The command given replaces the entrypoint; the user and read-only root are the image's and
    // ctr's, checked in the container's spec below.
    let crd = containerd.ctr(&[
        "run",
        "--snapshotter",
        "native",
        "--read-only",
        &image,
        "operator-crd",
        "/foreman-box",
        "operator",
        "crd",
    ]);
    assert!(
        crd.status.success(),
        "ctr run: {}\n{}",
        all_of(&crd),
        containerd.log()
    );
    let host = run(&mut foreman_box_at(static_binary(), &["operator", "crd"]));
    assert_eq!(host.code, 0, "{}", host.all());
    assert_eq!(
        stdout_of(&crd),
        host.stdout,
        "the CRD printed inside the container"
    );
    let info = containerd.ctr(&["containers", "info", "operator-crd"]);
    assert!(info.status.success(), "{}", all_of(&info));
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["Spec"]["process"]["user"]["uid"], 65532, "{info:#}");
    assert_eq!(info["Spec"]["process"]["user"]["gid"], 65532, "{info:#}");
    assert_eq!(info["Spec"]["root"]["readonly"], true, "{info:#}");
    let rm = containerd.ctr(&["containers", "rm", "operator-crd"]);
    assert!(rm.status.success(), "{}", all_of(&rm));

    // Without a command, the entrypoint runs the operator, which finds no cluster here.
    let entry = containerd.ctr(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "--read-only",
        &image,
        "operator-entrypoint",
    ]);
    assert!(!entry.status.success(), "{}", all_of(&entry));
    assert!(
        all_of(&entry).contains("connecting to the Kubernetes API"),
        "{}",
        all_of(&entry)
    );
}

#[test]
fn operator_manifests_validate_and_name_the_image_never_pulled() {
    let root = debian_root();
    let out = install_operator(static_binary(), root.path());
    assert_eq!(out.code, 0, "{}", out.all());
    let dir = root.path().join(MANIFESTS);
    let files: Vec<PathBuf> = [
        "foreman-box-00-namespace.yaml",
        "foreman-box-10-crd.yaml",
        "foreman-box-20-operator.yaml",
    ]
    .iter()
    .map(|n| dir.join(n))
    .collect();
    let v = kubernetes_validate(&files);
    assert_eq!(v.code, 0, "kubernetes-validate --strict: {}", v.all());
    let text = std::fs::read_to_string(&files[2]).unwrap();
    for needle in [
        "imagePullPolicy: Never",
        "runAsNonRoot: true",
        "runAsUser: 65532",
        "readOnlyRootFilesystem: true",
        "kind: ServiceAccount",
        "kind: RoleBinding",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

#[test]
fn rerun_writes_nothing_and_a_new_binary_rolls_the_reference() {
    let root = debian_root();
    let first = install_operator(static_binary(), root.path());
    assert_eq!(first.code, 0, "{}", first.all());
    let image = deployment_image(root.path());
    let archive = std::fs::read(root.path().join(ARCHIVE)).unwrap();

    let before = tree_mtimes(root.path());
    let again = install_operator(static_binary(), root.path());
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert_eq!(
        tree_mtimes(root.path()),
        before,
        "a converged re-run writes nothing"
    );

    // A copy of the same binary (new inode and mtime): read again, but the same bytes come out,
    // so the archive is not rewritten; only the stamp that spares the next run the reading is.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("foreman-box");
    std::fs::copy(static_binary(), &copy).unwrap();
    let same = install_operator(&copy, root.path());
    assert_eq!(same.code, 0, "{}", same.all());
    let changed: Vec<_> = tree_mtimes(root.path())
        .into_iter()
        .filter(|e| !before.contains(e))
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        changed,
        [
            PathBuf::from("var/lib/foreman-box"),
            PathBuf::from("var/lib/foreman-box/operator-image.json")
        ],
        "only the stamp (renamed into its directory) changes: {}",
        same.all()
    );
    assert_eq!(std::fs::read(root.path().join(ARCHIVE)).unwrap(), archive);

    // A different binary (bytes appended past the ELF image still run): a new reference, the
    // Deployment follows, and stale operator archives go.
    std::fs::write(
        root.path()
            .join(IMAGES)
            .join("foreman-box-operator-0.0.9.tar"),
        b"old",
    )
    .unwrap();
    let mut bytes = std::fs::read(static_binary()).unwrap();
    bytes.extend_from_slice(b"a different build");
    let other = dir.path().join("foreman-box-other");
    std::fs::write(&other, bytes).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let new = install_operator(&other, root.path());
    assert_eq!(new.code, 0, "{}", new.all());
    let new_image = deployment_image(root.path());
    assert_ne!(new_image, image);
    assert!(
        new.stdout.contains(&new_image),
        "the plan names the new image: {}",
        new.stdout
    );
    assert_ne!(std::fs::read(root.path().join(ARCHIVE)).unwrap(), archive);
    assert_eq!(operator_archives(root.path()), ["foreman-box-operator.tar"]);
}

#[test]
fn dynamically_linked_build_is_refused_before_anything_is_written() {
    let root = debian_root();
    let before = tree_mtimes(root.path());
    // storage comes before operator in the install order: it must not run either.
    let out = run(&mut foreman_box(&[
        "install",
        "--root",
        root.path().to_str().unwrap(),
        "--only",
        "storage,operator",
    ]));
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("is dynamically linked")
            && out.stderr.contains(&binary().display().to_string())
            && out
                .stderr
                .contains("help: build the static binary with `scripts/build.sh`"),
        "{}",
        out.stderr
    );
    assert_eq!(tree_mtimes(root.path()), before, "nothing was written");
}
