//! A throwaway PostgreSQL cluster: `initdb` into a temp dir, `postgres` on a free loopback port,
//! password (SCRAM) authentication over TCP, stopped and deleted on drop. When the harness runs
//! as root (PostgreSQL refuses to), the server runs as the `postgres` user, or `nobody`.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::Supervised;
use crate::{free_port, wait_until};

pub const SUPERUSER: &str = "keyward_admin";

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found: install the Debian package `postgresql` (scripts/lib.sh does)"
    )]
    NotInstalled,
    #[error("{step} failed: {message}")]
    Step { step: &'static str, message: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

fn step(step: &'static str) -> impl Fn(std::io::Error) -> PostgresError {
    move |e| PostgresError::Step {
        step,
        message: e.to_string(),
    }
}

/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/<v>/bin`, else `PATH`.
pub fn find_bindir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// The (uid, gid) to run the server as when we are root.
fn unprivileged_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let cname = CString::new(name).ok()?;
        let pw = unsafe { libc::getpwnam(cname.as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Some((uid, gid));
        }
    }
    None
}

fn chown_recursive(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_recursive(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

pub struct PostgresCluster {
    pub port: u16,
    pub superuser_password: String,
    process: Option<Supervised>,
    dir: tempfile::TempDir,
}

impl PostgresCluster {
    /// Password logins over TCP, plaintext only.
    pub async fn start() -> Result<Self, PostgresError> {
        Self::start_with(None).await
    }

    /// As [`start`](Self::start), and also TLS with `server` (clients choose: `host` lines in
    /// `pg_hba.conf` accept both, as on RDS without `rds.force_ssl`).
    pub async fn start_with_tls(server: &crate::tls::ServerCert) -> Result<Self, PostgresError> {
        Self::start_with(Some(server)).await
    }

    async fn start_with(tls: Option<&crate::tls::ServerCert>) -> Result<Self, PostgresError> {
        let bindir = find_bindir().ok_or(PostgresError::NotInstalled)?;
        let dir = tempfile::Builder::new()
            .prefix("keyward-pg-")
            .tempdir_in(std::env::temp_dir())?;
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let setup = Setup {
            bindir,
            dir: dir.path().to_path_buf(),
            data: dir.path().join("data"),
            user: unprivileged_user(),
        };
        if let Some((uid, gid)) = setup.user {
            chown_recursive(dir.path(), uid, gid)?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        }
        setup.initdb(&password)?;
        let tls_args = match tls {
            Some(server) => setup.tls_args(server)?,
            None => Vec::new(),
        };
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut process = setup.spawn(port, &tls_args)?;
            let ready = wait_until(Duration::from_secs(30), || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            })
            .await;
            if ready {
                let cluster = Self {
                    port,
                    superuser_password: password,
                    process: Some(process),
                    dir,
                };
                return cluster.first_login().await;
            }
            process.terminate();
            last = Some(PostgresError::Step {
                step: "postgres start",
                message: format!("not listening on {port} after 30s"),
            });
        }
        Err(last.unwrap_or(PostgresError::NotInstalled))
    }

    /// The port accepting connections is not the same as accepting logins.
    async fn first_login(self) -> Result<Self, PostgresError> {
        for _ in 0..100 {
            if self.connect_superuser().await.is_ok() {
                return Ok(self);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(PostgresError::Step {
            step: "first login",
            message: "the server never accepted the superuser".into(),
        })
    }

    /// A libpq-style connection string for a user (no TLS: loopback only).
    pub fn connection_string(&self, user: &str, password: &str, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password='{}' dbname={dbname} sslmode=disable",
            self.port,
            password.replace('\\', "\\\\").replace('\'', "\\'")
        )
    }

    pub async fn connect_superuser(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.connect_as(SUPERUSER, &self.superuser_password, "postgres")
            .await
    }

    /// A plaintext loopback session as any user (the tests' view of the database).
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(dbname)
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Everything the server logged so far.
    pub fn server_log(&self) -> String {
        let mut text = String::new();
        if let Ok(entries) = std::fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with("postgres-") {
                    text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
                }
            }
        }
        text
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.terminate();
        }
    }
}

/// Where a cluster's binaries, files and data live, and the user it runs as (when root).
struct Setup {
    bindir: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    user: Option<(u32, u32)>,
}

impl Setup {
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn chown(&self, path: &Path) -> std::io::Result<()> {
        match self.user {
            Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
            None => Ok(()),
        }
    }

    /// A fresh data directory: the superuser with `password`, trust locally, SCRAM over TCP.
    fn initdb(&self, password: &str) -> Result<(), PostgresError> {
        let pwfile = self.dir.join("pwfile");
        std::fs::write(&pwfile, password)?;
        self.chown(&pwfile)?;
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .output()
            .map_err(step("initdb"))?;
        if !out.status.success() {
            return Err(PostgresError::Step {
                step: "initdb",
                message: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(())
    }

    /// Writes the server's certificate and key; the settings that turn TLS on with them.
    fn tls_args(&self, server: &crate::tls::ServerCert) -> Result<Vec<String>, PostgresError> {
        let cert = self.dir.join("server.crt");
        let key = self.dir.join("server.key");
        std::fs::write(&cert, &server.cert_pem)?;
        std::fs::write(&key, &server.key_pem)?;
        // PostgreSQL refuses a key file readable by others.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
        self.chown(&cert)?;
        self.chown(&key)?;
        Ok(vec![
            "-c".to_owned(),
            "ssl=on".to_owned(),
            "-c".to_owned(),
            format!("ssl_cert_file={}", cert.display()),
            "-c".to_owned(),
            format!("ssl_key_file={}", key.display()),
        ])
    }

    /// The server on `port`, logging every statement to `postgres-<port>.log`.
    fn spawn(&self, port: u16, tls_args: &[String]) -> Result<Supervised, PostgresError> {
        let log_path = self.dir.join(format!("postgres-{port}.log"));
        let log = std::fs::File::create(&log_path)?;
        self.chown(&log_path)?;
        let mut server = self.command("postgres");
        server
            .arg("-D")
            .arg(&self.data)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=50",
                // Every statement is logged, so tests can prove no password reaches the
                // server's log.
                "-c",
                "log_statement=all",
            ])
            .args(tls_args)
            .arg("-k")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Supervised::spawn("postgres", server).map_err(step("starting postgres"))
    }
}
