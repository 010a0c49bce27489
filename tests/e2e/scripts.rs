//! The shell scripts: shellcheck, `vagrant validate`, and `scripts/install.sh` piped to dash and
//! bash against a loopback release server (a stand-in binary that records how it was run).

use foreman_box_tests::mirror::Mirror;
use foreman_box_tests::{binary, foreman_box, foreman_box_at, mode, run, sha256_hex, Run};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SHELLS: [&str; 2] = ["dash", "bash"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn install_sh() -> Vec<u8> {
    std::fs::read(workspace().join("scripts/install.sh")).unwrap()
}

/// The release's name for this machine's binary, as install.sh picks it.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64",
        _ => "x86_64",
    }
}

/// A stand-in foreman-box: prints a small uninstall script, bash completion or man page when
/// asked (`completions bash` fails when $STANDIN_FAIL is `completions`), otherwise records its
/// arguments (one per line) and the FOREMAN_BOX_* variables it got into $STANDIN_LOG. The real
/// binary's completion and man page are installed by
/// `install_sh_installs_the_real_binary_from_a_local_path_with_its_uninstall_script`.
const STANDIN: &str = r#"#!/bin/sh
if [ "$1" = uninstall ] && [ "$2" = --print-script ]; then
    printf '#!/bin/sh\necho stand-in uninstall\n'
    exit 0
fi
if [ "$1" = completions ] && [ "$2" = bash ]; then
    [ "${STANDIN_FAIL:-}" = completions ] && exit 1
    printf 'complete -F _standin foreman-box\n'
    exit 0
fi
if [ "$1" = man ] && [ $# = 1 ]; then
    printf '.TH FOREMAN-BOX 1 stand-in\n'
    exit 0
fi
printf '%s\n' "$@" >"$STANDIN_LOG"
env | grep '^FOREMAN_BOX_' | sort >"$STANDIN_LOG.env"
"#;

struct Scene {
    dir: tempfile::TempDir,
    mirror: Mirror,
}

impl Scene {
    /// A release v0.1.0 on a loopback server: the stand-in as this arch's binary, and SHA256SUMS.
    fn new(sums_for: &[u8]) -> Scene {
        let mirror = Mirror::start();
        let name = format!("foreman-box-{}", arch());
        mirror.put(&format!("/v0.1.0/{name}"), STANDIN.as_bytes().to_vec());
        let sums = format!(
            "{}  foreman-box-other\n{}  {name}\n",
            sha256_hex(b"other"),
            sha256_hex(sums_for)
        );
        mirror.put("/v0.1.0/SHA256SUMS", sums.into_bytes());
        let dir = tempfile::tempdir().unwrap();
        for d in ["tmp", "cwd"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Scene { dir, mirror }
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("standin.log")
    }

    /// FOREMAN_BOX_COMPLETION_DIR: install.sh creates it when asked to write there.
    fn completion_dir(&self) -> PathBuf {
        self.dir.path().join("share/bash-completion/completions")
    }

    /// FOREMAN_BOX_MAN_DIR.
    fn man_dir(&self) -> PathBuf {
        self.dir.path().join("share/man/man1")
    }

    /// `SHELL -s -- ARGS` with SCRIPT on stdin, in a clean FOREMAN_BOX_* environment.
    fn command(&self, shell: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(shell);
        for (k, _) in std::env::vars() {
            if k.starts_with("FOREMAN_BOX_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("-s")
            .arg("--")
            .args(args)
            .current_dir(self.dir.path().join("cwd"))
            .env("TMPDIR", self.dir.path().join("tmp"))
            .env("STANDIN_LOG", self.log())
            .env("FOREMAN_BOX_DOWNLOAD_URL", self.mirror.url())
            .env("FOREMAN_BOX_BIN_DIR", self.bin_dir())
            .env("FOREMAN_BOX_COMPLETION_DIR", self.completion_dir())
            .env("FOREMAN_BOX_MAN_DIR", self.man_dir());
        cmd
    }

    /// Everything the script could have left: installed files, the stand-in's log, temp files.
    fn leftovers(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in [self.bin_dir(), self.log(), self.dir.path().join("share")] {
            if p.exists() {
                out.push(p);
            }
        }
        for d in ["tmp", "cwd"] {
            for e in std::fs::read_dir(self.dir.path().join(d)).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        out
    }
}

fn pipe(mut cmd: Command, script: &[u8]) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the shell runs");
    child.stdin.take().unwrap().write_all(script).unwrap();
    child.wait_with_output().unwrap().into()
}

/// The names in DIR, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn every_script_is_shellcheck_clean() {
    let mut scripts: Vec<PathBuf> = ["scripts", "vagrant"]
        .iter()
        .flat_map(|d| std::fs::read_dir(workspace().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    for name in [
        "install.sh",
        "uninstall.sh",
        "release.sh",
        "test.sh",
        "smoke.sh",
    ] {
        assert!(
            scripts.iter().any(|p| p.ends_with(name)),
            "{name} is missing from {scripts:?}"
        );
    }
    let out: Run = Command::new("shellcheck")
        .args(["--shell=sh", "--severity=style"])
        .args(&scripts)
        .output()
        .expect("shellcheck is installed (scripts/test.sh installs it)")
        .into();
    assert_eq!(out.code, 0, "shellcheck:\n{}", out.all());
}

/// A script committed without its run bit fails at once with "Permission denied" when the README's
/// recipes run it (`scripts/release.sh`, `vagrant/smoke.sh` ...). What counts is git's mode: a
/// clone gets that, whatever the file's mode is in this checkout.
#[test]
fn every_script_the_readme_names_and_every_script_in_scripts_and_vagrant_is_executable_in_git() {
    let out: Run = Command::new("git")
        .arg("-C")
        .arg(workspace())
        .args(["ls-files", "-s", "--"])
        .args(["scripts", "vagrant", "README.md", "docs"])
        .output()
        .expect("git runs (the tests need a git checkout)")
        .into();
    assert_eq!(out.code, 0, "git ls-files -s:\n{}", out.all());
    // `<mode> <object> <stage>\t<path>` per tracked file.
    let modes: std::collections::BTreeMap<String, String> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let (meta, path) = l.split_once('\t')?;
            Some((path.to_string(), meta.split(' ').next()?.to_string()))
        })
        .collect();
    let is_script = |p: &str| {
        (p.starts_with("scripts/") || p.starts_with("vagrant/"))
            && p.ends_with(".sh")
            && !p[8..].contains('/')
    };
    let mut wanted: std::collections::BTreeSet<String> =
        modes.keys().filter(|p| is_script(p)).cloned().collect();
    let documents: Vec<&String> = modes
        .keys()
        .filter(|p| p.as_str() == "README.md" || (p.starts_with("docs/") && p.ends_with(".md")))
        .collect();
    assert!(
        documents.iter().any(|p| p.as_str() == "README.md"),
        "README.md is not in git: {modes:?}"
    );
    for doc in documents {
        let text = std::fs::read_to_string(workspace().join(doc)).unwrap();
        wanted.extend(named_scripts(&text));
    }
    for name in ["scripts/release.sh", "scripts/test.sh", "vagrant/smoke.sh"] {
        assert!(wanted.contains(name), "{name} is not found: {wanted:?}");
    }
    let wrong: Vec<String> = wanted
        .iter()
        .filter_map(|p| match modes.get(p).map(String::as_str) {
            Some("100755") => None,
            Some(mode) => Some(format!(
                "{p} is committed with mode {mode}\nhelp: git update-index --chmod=+x {p}"
            )),
            None => Some(format!("{p} is named in the documentation but not in git")),
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `scripts/NAME.sh` and `vagrant/NAME.sh` wherever a text mentions them.
fn named_scripts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["scripts/", "vagrant/"] {
        for (at, _) in text.match_indices(dir) {
            // Only a path that starts here: not `dist/scripts/...`.
            let before = text[..at].chars().last();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '_') {
                continue;
            }
            let name: String = text[at + dir.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .collect();
            if let Some(stem) = name.strip_suffix(".sh") {
                if !stem.is_empty() {
                    out.push(format!("{dir}{name}"));
                }
            }
        }
    }
    out
}

/// The Vagrantfile's `hosts` provisioner as Ruby hands it to the box's shell (its own heredoc
/// and interpolation), for the box `name`, with /etc/hosts replaced by `hosts`.
fn vagrant_hosts_script(name: &str, hosts: &Path) -> String {
    let out = Command::new("ruby")
        .arg("-e")
        .arg(
            r#"src = File.read(ARGV[0])
body = src[/provision "hosts", type: "shell", inline: <<~SH\n(.*?)\n\s*SH\n/m, 1] or abort "no hosts provisioner"
name = ARGV[1]
print eval("<<~SH\n" + body + "\nSH\n")"#,
        )
        .arg(workspace().join("vagrant/Vagrantfile"))
        .arg(name)
        .output()
        .expect("ruby runs (scripts/test.sh installs ruby)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .replace("/etc/hosts", hosts.to_str().unwrap())
}

#[test]
fn vagrant_boxes_map_their_hostname_to_the_node_address_not_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    // What Vagrant writes for `node.vm.hostname` on a Debian box.
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.1.1 debian12.foreman-box.test debian12\n::1 localhost\n",
    )
    .unwrap();
    let script = vagrant_hosts_script("debian12", &hosts);
    let lint = dir.path().join("hosts.sh");
    std::fs::write(&lint, &script).unwrap();
    let check = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(&lint)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // getent reads the real /etc/hosts: the file under test is read back below instead.
    let script: String = script
        .lines()
        .filter(|l| !l.starts_with("getent"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&hosts).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("debian12.foreman-box.test"))
        .unwrap_or_else(|| panic!("the name is gone: {text}"));
    let ip: std::net::IpAddr = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(!ip.is_loopback(), "{text}");
    assert_eq!(
        text.matches("debian12.foreman-box.test").count(),
        1,
        "{text}"
    );
    assert!(text.contains("127.0.0.1 localhost"), "{text}");
}

#[test]
fn vagrantfile_passes_vagrant_validate() {
    // No VM provider on a CI machine: validate everything but the provider blocks.
    let dotfiles = tempfile::tempdir().unwrap();
    let out: Run = Command::new("vagrant")
        .args(["validate", "--ignore-provider"])
        .current_dir(workspace().join("vagrant"))
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .env("VAGRANT_DOTFILE_PATH", dotfiles.path())
        .output()
        .expect("vagrant is installed (scripts/test.sh installs Debian's vagrant package)")
        .into();
    assert_eq!(out.code, 0, "vagrant validate:\n{}", out.all());
    assert!(
        out.stdout.contains("Vagrantfile validated successfully"),
        "{}",
        out.all()
    );
}

#[test]
fn install_sh_pins_the_workspace_version() {
    let text = String::from_utf8(install_sh()).unwrap();
    let pinned = format!("DEFAULT_VERSION=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(
        text.lines().any(|l| l == pinned),
        "install.sh must default to the workspace version: {pinned}"
    );
}

#[test]
fn install_sh_verifies_installs_and_runs_the_binary_with_the_script_arguments() {
    for shell in SHELLS {
        let scene = Scene::new(STANDIN.as_bytes());
        let mut cmd = scene.command(
            shell,
            &["--katello=false", "--hostname", "a b.example.test"],
        );
        cmd.env("FOREMAN_BOX_DYNFLOW_WORKERS", "3");
        let out = pipe(cmd, &install_sh());
        assert_eq!(out.code, 0, "{shell}: {}", out.all());
        assert!(out.all().contains("sha256 verified"), "{}", out.all());

        let installed = scene.bin_dir().join("foreman-box");
        assert_eq!(std::fs::read(&installed).unwrap(), STANDIN.as_bytes());
        assert_eq!(mode(&installed), 0o755);
        let uninstall = scene.bin_dir().join("foreman-box-uninstall.sh");
        assert_eq!(
            std::fs::read_to_string(&uninstall).unwrap(),
            "#!/bin/sh\necho stand-in uninstall\n",
            "the uninstall script is the one the binary carries"
        );
        assert_eq!(mode(&uninstall), 0o755);
        assert_eq!(
            lines(&scene.log()),
            [
                "install",
                "--katello=false",
                "--hostname",
                "a b.example.test"
            ],
            "{shell}: the binary runs `install` with the script's arguments, words intact"
        );
        // Settings pass through; the script's own variables are not settings and stay behind.
        assert_eq!(
            lines(&scene.log().with_extension("log.env")),
            ["FOREMAN_BOX_DYNFLOW_WORKERS=3"],
            "{shell}"
        );
        assert_eq!(
            names(&scene.bin_dir()),
            ["foreman-box", "foreman-box-uninstall.sh"],
            "no temp file left"
        );
        // The bash completion and the man page the binary printed, in the asked directories
        // (created), readable by everyone, and no temp file beside them.
        let completion = scene.completion_dir().join("foreman-box");
        assert_eq!(
            std::fs::read_to_string(&completion).unwrap(),
            "complete -F _standin foreman-box\n",
            "{shell}"
        );
        assert_eq!(mode(&completion), 0o644);
        assert_eq!(names(&scene.completion_dir()), ["foreman-box"], "{shell}");
        let man = scene.man_dir().join("foreman-box.1");
        assert_eq!(
            std::fs::read_to_string(&man).unwrap(),
            ".TH FOREMAN-BOX 1 stand-in\n",
            "{shell}"
        );
        assert_eq!(mode(&man), 0o644);
        assert_eq!(names(&scene.man_dir()), ["foreman-box.1"], "{shell}");
        assert!(
            out.stdout.contains(&format!(
                "installed the bash completion: {}",
                completion.display()
            )) && out
                .stdout
                .contains(&format!("installed the man page: {}", man.display())),
            "{shell}: {}",
            out.all()
        );
        assert_eq!(
            std::fs::read_dir(scene.dir.path().join("tmp"))
                .unwrap()
                .count(),
            0,
            "the download dir is cleaned up"
        );
    }
}

#[test]
fn install_sh_that_cannot_write_the_completion_or_man_page_warns_and_still_installs_and_runs() {
    for shell in SHELLS {
        let scene = Scene::new(STANDIN.as_bytes());
        // The man directory cannot be created (a file is in its way); the completion command
        // fails.
        std::fs::create_dir_all(scene.dir.path().join("share")).unwrap();
        std::fs::write(scene.dir.path().join("share/man"), "a file").unwrap();
        let mut cmd = scene.command(shell, &["--katello=false"]);
        cmd.env("STANDIN_FAIL", "completions");
        let out = pipe(cmd, &install_sh());
        assert_eq!(out.code, 0, "{shell}: {}", out.all());
        assert!(
            out.stderr.contains(
                "warning: foreman-box completions bash failed or printed nothing: the bash completion is not installed"
            ),
            "{shell}: {}",
            out.all()
        );
        assert!(
            out.stderr.contains(&format!(
                "warning: cannot create {}: the man page is not installed",
                scene.man_dir().display()
            )),
            "{shell}: {}",
            out.all()
        );
        assert_eq!(
            names(&scene.completion_dir()),
            Vec::<String>::new(),
            "{shell}: no completion and no temp file"
        );
        assert_eq!(
            names(&scene.bin_dir()),
            ["foreman-box", "foreman-box-uninstall.sh"],
            "{shell}"
        );
        assert_eq!(
            lines(&scene.log()),
            ["install", "--katello=false"],
            "{shell}"
        );
    }
}

#[test]
fn install_sh_with_a_corrupted_binary_installs_nothing_and_runs_nothing() {
    for shell in SHELLS {
        let scene = Scene::new(b"the binary that was released");
        let out = pipe(scene.command(shell, &["--katello=false"]), &install_sh());
        assert_eq!(out.code, 1, "{shell}: {}", out.all());
        assert!(
            out.stderr.contains("does not match SHA256SUMS")
                && out.stderr.contains("nothing was installed"),
            "{shell}: {}",
            out.all()
        );
        assert_eq!(scene.leftovers(), Vec::<PathBuf>::new(), "{shell}");
    }
}

#[test]
fn install_sh_refuses_plain_http_except_to_loopback() {
    let scene = Scene::new(STANDIN.as_bytes());
    let mut cmd = scene.command("dash", &[]);
    cmd.env(
        "FOREMAN_BOX_DOWNLOAD_URL",
        "http://downloads.example.test/foreman-box",
    );
    let out = pipe(cmd, &install_sh());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(out.stderr.contains("is not https"), "{}", out.all());
    assert!(
        out.stderr.contains("help: set FOREMAN_BOX_DOWNLOAD_URL"),
        "{}",
        out.all()
    );
    assert!(scene.mirror.requests().is_empty());
    assert_eq!(scene.leftovers(), Vec::<PathBuf>::new());
}

#[test]
fn install_sh_cut_short_anywhere_creates_nothing_and_runs_nothing() {
    let script = install_sh();
    // Every offset near both ends (a cut inside the last line is the dangerous one), and a
    // spread through the middle.
    let mut offsets: Vec<usize> = (0..40).collect();
    offsets.extend((40..script.len().saturating_sub(80)).step_by(61));
    // Up to the closing brace: without only its final newline the script is whole.
    assert_eq!(script.last(), Some(&b'\n'));
    offsets.extend(script.len().saturating_sub(80)..script.len() - 1);
    for shell in SHELLS {
        // The whole script does install and run: the cut runs below can fail.
        let scene = Scene::new(STANDIN.as_bytes());
        let out = pipe(scene.command(shell, &["--x"]), &script);
        assert_eq!(out.code, 0, "{shell}: {}", out.all());
        assert!(scene.log().exists());

        let scene = Scene::new(STANDIN.as_bytes());
        for &cut in &offsets {
            let out = pipe(scene.command(shell, &["--x"]), &script[..cut]);
            let left = scene.leftovers();
            assert!(
                left.is_empty(),
                "{shell}: the script cut at byte {cut} of {} left {left:?}\n{}",
                script.len(),
                out.all()
            );
        }
        assert!(
            scene.mirror.requests().is_empty(),
            "{shell}: a cut script downloaded something"
        );
    }
}

#[test]
fn install_sh_as_a_user_without_sudo_says_to_run_as_root_and_installs_nothing() {
    let scene = Scene::new(STANDIN.as_bytes());
    // A PATH with the tools the script uses, and no sudo.
    let tools = scene.dir.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    for t in [
        "uname", "mktemp", "chmod", "mv", "rm", "id", "env", "sed", "tr", "cp", "awk", "dash",
    ] {
        let found = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(t))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("{t} not found"));
        std::os::unix::fs::symlink(found, tools.join(t)).unwrap();
    }
    // The user `nobody` must be able to reach the temp dirs.
    std::fs::set_permissions(
        scene.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    for d in ["tmp", "cwd"] {
        std::fs::set_permissions(
            scene.dir.path().join(d),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
    }
    let mut c = Command::new("/usr/bin/setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(tools.join("dash"))
        .args(["-s", "--"])
        .env_clear()
        .env("PATH", &tools)
        .env("TMPDIR", scene.dir.path().join("tmp"))
        .env("STANDIN_LOG", scene.log())
        .env("FOREMAN_BOX_DOWNLOAD_URL", scene.mirror.url())
        .env("FOREMAN_BOX_BIN_DIR", scene.bin_dir())
        .current_dir(scene.dir.path().join("cwd"));
    let out = pipe(c, &install_sh());
    assert_eq!(out.code, 1, "{}", out.all());
    assert!(
        out.stderr.contains("must run as root") && out.stderr.contains("sudo is not installed"),
        "{}",
        out.all()
    );
    assert!(scene.mirror.requests().is_empty());
    assert!(!scene.bin_dir().exists());
}

#[test]
fn install_sh_installs_the_real_binary_from_a_local_path_with_its_uninstall_script() {
    let scene = Scene::new(b"unused");
    let mut cmd = scene.command("dash", &["--version"]);
    cmd.env("FOREMAN_BOX_BINARY", binary());
    let out = pipe(cmd, &install_sh());
    assert_eq!(out.code, 0, "{}", out.all());
    assert!(
        out.stdout.contains(&format!(
            "foreman-box-install {}",
            env!("CARGO_PKG_VERSION")
        )),
        "`foreman-box install --version` ran: {}",
        out.all()
    );
    assert_eq!(
        std::fs::read(scene.bin_dir().join("foreman-box-uninstall.sh")).unwrap(),
        std::fs::read(workspace().join("scripts/uninstall.sh")).unwrap(),
        "the installed uninstall script is scripts/uninstall.sh, as embedded in the binary"
    );
    assert!(scene.mirror.requests().is_empty(), "nothing downloaded");
    // The bash completion and the man page are the real binary's own.
    for (file, args) in [
        (
            scene.completion_dir().join("foreman-box"),
            ["completions", "bash"].as_slice(),
        ),
        (scene.man_dir().join("foreman-box.1"), ["man"].as_slice()),
    ] {
        let printed = run(&mut foreman_box(args));
        assert_eq!(printed.code, 0, "{}", printed.all());
        assert_eq!(
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
            printed.stdout,
            "{} is what `foreman-box {}` prints",
            file.display(),
            args.join(" ")
        );
    }
    assert!(
        std::fs::read_to_string(scene.completion_dir().join("foreman-box"))
            .unwrap()
            .contains("complete -F _foreman__box")
    );
}

#[test]
fn release_sh_writes_the_man_page_and_completions_of_the_built_binary_listed_in_sha256sums() {
    let dist = tempfile::tempdir().unwrap();
    let out: Run = Command::new("sh")
        .arg(workspace().join("scripts/release.sh"))
        .env("DIST", dist.path())
        .output()
        .expect("sh runs scripts/release.sh")
        .into();
    assert_eq!(out.code, 0, "release.sh:\n{}", out.all());
    let d = dist.path();
    let sums: Vec<(String, String)> = lines(&d.join("SHA256SUMS"))
        .iter()
        .map(|l| {
            let (hash, name) = l.split_once("  ").expect("`HASH  NAME` lines");
            (name.to_string(), hash.to_string())
        })
        .collect();
    let binary = format!("foreman-box-{}", arch());
    for name in [
        binary.as_str(),
        "foreman-box-uninstall.sh",
        "install.sh",
        "foreman-box.1",
        "completions/foreman-box.bash",
        "completions/_foreman-box",
        "completions/foreman-box.fish",
    ] {
        let hash = sums
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h.as_str())
            .unwrap_or_else(|| panic!("SHA256SUMS lacks {name}: {sums:?}"));
        let file = std::fs::read(d.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(sha256_hex(&file), hash, "{name}");
    }
    // What the released binary prints, and every subcommand in it.
    let bin = d.join(&binary);
    for (file, shell) in [
        ("completions/foreman-box.bash", "bash"),
        ("completions/_foreman-box", "zsh"),
        ("completions/foreman-box.fish", "fish"),
    ] {
        let text = std::fs::read_to_string(d.join(file)).unwrap();
        let printed = run(&mut foreman_box_at(&bin, &["completions", shell]));
        assert_eq!(text, printed.stdout, "{file}");
        crate::terminal::assert_completion_offers_every_subcommand(shell, &text);
    }
    let man = std::fs::read_to_string(d.join("foreman-box.1")).unwrap();
    assert_eq!(man, run(&mut foreman_box_at(&bin, &["man"])).stdout);
    crate::terminal::assert_man_page_mentions_every_subcommand(&man);
}

/// The README is read in two minutes: under 150 lines, the detail in `docs/` pages it links to,
/// and every relative link in it and in those pages names a file that exists.
#[test]
fn readme_is_short_and_every_relative_link_in_it_and_docs_resolves() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < 150,
        "README.md has {lines} lines; move detail to a docs/ page"
    );
    let mut docs: Vec<std::path::PathBuf> = std::fs::read_dir(workspace().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, workspace().join("README.md"));
    let mut checked = 0;
    let mut broken = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        for target in text.split("](").skip(1).filter_map(|s| s.split(')').next()) {
            if target.contains("://") || target.starts_with('#') || target.starts_with('<') {
                continue;
            }
            let file = target.split('#').next().unwrap();
            checked += 1;
            if !doc.parent().unwrap().join(file).exists() {
                broken.push(format!("{}: {target}", doc.display()));
            }
        }
    }
    assert!(
        checked >= 8,
        "only {checked} relative links found in README.md and docs/"
    );
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
    for page in ["steps", "configuration", "install", "day-two", "testing"] {
        assert!(
            readme.contains(&format!("(docs/{page}.md)")),
            "README.md does not link docs/{page}.md"
        );
    }
}
