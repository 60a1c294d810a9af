//! A throwaway PostgreSQL cluster for tests: Debian's PostgreSQL (`scripts/install-counterparts`
//! installs it), `initdb --no-sync` into a temporary folder (as the `postgres` user when the
//! tests run as root: initdb refuses root), started on a free loopback port with its socket in
//! that folder, stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::free_port;

/// One running cluster.
pub struct PostgresCluster {
    bin: PathBuf,
    folder: tempfile::TempDir,
    pub port: u16,
    next_database: AtomicUsize,
}

fn postgres_bin() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    candidates.sort_by_key(|bin| {
        bin.parent()
            .and_then(|version| version.file_name())
            .and_then(|name| name.to_str())
            .and_then(|name| name.parse::<u32>().ok())
            .unwrap_or(0)
    });
    candidates.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-counterparts")
    })
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a PostgreSQL program as the user that owns the cluster.
fn as_cluster_owner(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn succeed(what: &str, output: std::io::Result<Output>) -> Output {
    let output = output.unwrap_or_else(|error| panic!("{what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl PostgresCluster {
    pub fn start() -> PostgresCluster {
        let bin = postgres_bin();
        let folder = tempfile::Builder::new()
            .prefix("e2e-postgres-")
            .tempdir()
            .expect("cluster folder");
        if running_as_root() {
            succeed(
                "chown the cluster folder",
                Command::new("chown")
                    .arg("postgres:")
                    .arg(folder.path())
                    .output(),
            );
        }
        let data = folder.path().join("data");
        succeed(
            "initdb",
            as_cluster_owner(&bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ])
                .output(),
        );
        let cluster = PostgresCluster {
            bin,
            folder,
            port: free_port(),
            next_database: AtomicUsize::new(0),
        };
        cluster.restart();
        cluster
    }

    /// A new empty database; its URL.
    pub fn create_database(&self) -> String {
        let name = format!(
            "host_test_{}",
            self.next_database.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL in a database and returns what psql printed (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = succeed(
            &format!("psql {sql:?}"),
            Command::new(self.bin.join("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-X",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                ])
                .args(["-p", &self.port.to_string(), "-d", database, "-c", sql])
                .output(),
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Everything a database holds, as `pg_dump` prints it.
    pub fn dump(&self, database: &str) -> Vec<u8> {
        succeed(
            "pg_dump",
            Command::new(self.bin.join("pg_dump"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-p",
                    &self.port.to_string(),
                    database,
                ])
                .output(),
        )
        .stdout
    }

    /// Stops the server at once (as a crash would); [`PostgresCluster::restart`] brings it back.
    pub fn stop(&self) {
        succeed(
            "pg_ctl stop",
            as_cluster_owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.folder.path().join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output(),
        );
    }

    fn server_options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.folder.path().display()
        )
    }

    /// Restarts the running server as an operator would (`pg_ctl restart -m fast`): every
    /// session is terminated "due to administrator command" (57P01), then it starts again.
    pub fn restart_fast(&self) {
        succeed(
            "pg_ctl restart",
            as_cluster_owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.folder.path().join("data"))
                .arg("-l")
                .arg(self.folder.path().join("server.log"))
                .args(["-m", "fast", "-w", "-t", "30", "-o", &self.server_options()])
                .arg("restart")
                .output(),
        );
    }

    /// Turns TLS on with a certificate and key made by a test CA (see [`TestCa`]): copied into
    /// the cluster's folder for its owner, then `pg_ctl reload`. Connections without TLS are
    /// still accepted, as `initdb`'s `pg_hba.conf` has `host` lines.
    pub fn enable_tls(&self, certificate: &Path, key: &Path) {
        let folder = self.folder.path();
        for (source, name) in [(certificate, "server.crt"), (key, "server.key")] {
            let target = folder.join(name);
            std::fs::copy(source, &target).expect("copy the server certificate");
            std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod the server key");
            if running_as_root() {
                succeed(
                    "chown the server certificate",
                    Command::new("chown").arg("postgres:").arg(&target).output(),
                );
            }
        }
        let conf = folder.join("data").join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            folder.join("server.crt").display(),
            folder.join("server.key").display()
        ));
        std::fs::write(&conf, text).expect("write postgresql.conf");
        succeed(
            "pg_ctl reload",
            as_cluster_owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(folder.join("data"))
                .arg("reload")
                .output(),
        );
        // The reload is asynchronous: wait until a TLS session is offered.
        for _ in 0..100 {
            if self.psql("postgres", "SHOW ssl").trim() == "on" {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("PostgreSQL did not turn TLS on:\n{}", self.log());
    }

    /// Starts the server (again, after [`PostgresCluster::stop`]) on its port, loopback only.
    pub fn restart(&self) {
        let options = self.server_options();
        succeed(
            "pg_ctl start",
            as_cluster_owner(&self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.folder.path().join("data"))
                .arg("-l")
                .arg(self.folder.path().join("server.log"))
                .args(["-w", "-t", "30", "-o", &options, "start"])
                .output(),
        );
    }

    /// A login role that must give its password over TCP (`scram-sha-256`; every other role
    /// keeps the cluster's trust authentication), owning a new database; that database's
    /// URL, without the password.
    pub fn database_with_password_user(&self, user: &str, password: &str) -> String {
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {user} LOGIN PASSWORD '{}'",
                password.replace('\'', "''")
            ),
        );
        let url = self.create_database();
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        self.psql(
            "postgres",
            &format!("ALTER DATABASE {name} OWNER TO {user}"),
        );
        let hba = self.folder.path().join("data").join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        // The first matching line decides: this one goes before the trust lines.
        std::fs::write(
            &hba,
            format!("host all {user} 127.0.0.1/32 scram-sha-256\n{rules}"),
        )
        .expect("write pg_hba.conf");
        self.psql("postgres", "SELECT pg_reload_conf()");
        format!("postgres://{user}@127.0.0.1:{}/{name}", self.port)
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.folder.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let _ = as_cluster_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.folder.path().join("data"))
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .output();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A certificate authority made with `openssl` for one test, and the certificates it signs.
pub struct TestCa {
    folder: tempfile::TempDir,
    pub certificate: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn openssl(what: &str, args: &[&str], folder: &Path) {
    succeed(
        what,
        Command::new("openssl")
            .args(args)
            .current_dir(folder)
            .output(),
    );
}

impl TestCa {
    /// A new CA (P-256, valid for two days) named `name`.
    pub fn new(name: &str) -> TestCa {
        let folder = tempfile::tempdir().expect("CA folder");
        openssl(
            "make a CA",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            folder.path(),
        );
        TestCa {
            certificate: folder.path().join("ca.pem"),
            key: folder.path().join("ca.key"),
            folder,
        }
    }

    /// A server certificate and key signed by this CA for `names` (`DNS:localhost`,
    /// `IP:127.0.0.1`): their paths.
    pub fn server_certificate(&self, names: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let folder = self.folder.path();
        std::fs::write(
            folder.join("server.ext"),
            format!("subjectAltName={names}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"),
        )
        .expect("extensions file");
        openssl(
            "make a server key",
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=postgres",
            ],
            folder,
        );
        openssl(
            "sign the server certificate",
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
            folder,
        );
        let _ = &self.key;
        (folder.join("server.pem"), folder.join("server.key"))
    }
}
