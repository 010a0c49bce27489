//! A throwaway PostgreSQL cluster from the machine's own server binaries: initdb in a temp dir,
//! its own port and socket directory, scram-sha-256 for TCP, stopped on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const SUPERUSER: &str = "postgres";

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub password: String,
    run_as: Option<String>,
}

/// The newest installed server's bin directory.
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(p) = found.pop() {
        return p;
    }
    for dir in ["/usr/pgsql/bin", "/usr/bin", "/usr/local/bin"] {
        if Path::new(dir).join("initdb").exists() && Path::new(dir).join("postgres").exists() {
            return dir.into();
        }
    }
    panic!("no PostgreSQL server binaries found (initdb); scripts/test.sh installs the postgresql package");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Pg {
    pub fn start() -> Pg {
        let bin = bindir();
        let dir = tempfile::Builder::new().prefix("fb-pg-").tempdir().unwrap();
        let password = format!("admin-{}", std::process::id());
        // PostgreSQL refuses to run as root: run it as the `postgres` OS user then.
        let run_as = nix::unistd::geteuid()
            .is_root()
            .then(|| SUPERUSER.to_string());
        if let Some(user) = &run_as {
            let u = nix::unistd::User::from_name(user)
                .unwrap()
                .unwrap_or_else(|| {
                    panic!("OS user {user} is missing; install the postgresql package")
                });
            nix::unistd::chown(dir.path(), Some(u.uid), Some(u.gid)).unwrap();
        }
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, &password).unwrap();
        if let Some(user) = &run_as {
            let u = nix::unistd::User::from_name(user).unwrap().unwrap();
            nix::unistd::chown(&pwfile, Some(u.uid), Some(u.gid)).unwrap();
        }
        let mut pg = Pg {
            dir,
            bin,
            port: free_port(),
            password,
            run_as,
        };
        let data = pg.data();
        pg.cmd(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                SUPERUSER,
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ],
        );
        std::fs::remove_file(&pwfile).unwrap();
        pg.start_server();
        pg
    }

    fn start_server(&mut self) {
        let data = self.data();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        self.cmd(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    fn cmd(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut c = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = c.args(args).current_dir(self.dir.path()).output().unwrap();
        assert!(
            out.status.success(),
            "{program} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn hba_path(&self) -> PathBuf {
        self.data().join("pg_hba.conf")
    }

    pub fn admin_url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Connects over TCP (so pg_hba's host rules and scram apply).
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        db: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(db)
            .connect(tokio_postgres::NoTls)
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    pub async fn admin(&self) -> tokio_postgres::Client {
        self.connect(SUPERUSER, &self.password, "postgres")
            .await
            .expect("admin connects")
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.data();
        let exe = self.bin.join("pg_ctl");
        let mut c = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let _ = c
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}
