//! `signer-bench --db postgres`: a PostgreSQL cluster of the benchmark's own
//! (Debian's server programs, `initdb` in the benchmark's directory — the
//! same disk as the SQLite runs — a free loopback port, run as the
//! `postgres` user when the benchmark runs as root), and the baseline the
//! PostgreSQL figures are held to: one `INSERT` + `COMMIT` round trip
//! (`synchronous_commit = on`).
//!
//! The test harness (`slashing-db/tests/common/pg.rs`) starts clusters the
//! same way; this one returns errors instead of panicking and never leaves a
//! server behind (the server dies with the benchmark: `setpriv
//! --pdeathsig`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error>;

const PASSWORD: &str = "signer-bench";

/// A running cluster with a `signer` role and a `slashing` database.
pub(super) struct LocalPostgres {
    pub port: u16,
    dir: PathBuf,
    server: Child,
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        // Immediate shutdown: the backends follow the postmaster.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.server.id().to_string()])
            .status();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory holding `initdb` and `postgres` (newest Debian version).
fn bin_dir() -> Result<PathBuf, Error> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        "--db postgres: PostgreSQL's server programs were not found under /usr/lib/postgresql: \
         install Debian's postgresql package (scripts/test does)"
            .into()
    })
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program args…` as `user` (when set), dying with the benchmark.
fn command(program: &Path, user: Option<&str>) -> Command {
    let mut c = Command::new("setpriv");
    if let Some(u) = user {
        c.arg(format!("--reuid={u}"))
            .arg(format!("--regid={u}"))
            .arg("--init-groups");
    }
    c.arg("--pdeathsig=KILL").arg("--").arg(program);
    c
}

fn checked(mut c: Command, what: &str) -> Result<(), Error> {
    let out = c
        .output()
        .map_err(|e| format!("--db postgres: running {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "--db postgres: {what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(())
}

impl LocalPostgres {
    /// `initdb` under `dir` and start the server.
    pub fn start(dir: &Path) -> Result<Self, Error> {
        let bin = bin_dir()?;
        let user = running_as_root().then_some("postgres");
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir)?;
        if let Some(u) = user {
            let mut c = Command::new("chown");
            c.arg(format!("{u}:")).arg(dir);
            checked(c, "chown")?;
        }
        let data = dir.join("data");
        let pwfile = dir.join("superuser-password");
        std::fs::write(&pwfile, format!("{PASSWORD}\n"))?;
        if let Some(u) = user {
            let mut c = Command::new("chown");
            c.arg(format!("{u}:")).arg(&pwfile);
            checked(c, "chown")?;
        }
        let mut initdb = command(&bin.join("initdb"), user);
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C"]);
        checked(initdb, "initdb")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        std::io::Write::write_all(
            &mut conf,
            format!(
                "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
                 fsync = on\nsynchronous_commit = on\nmax_connections = 100\nshared_buffers = 128MB\n",
                dir.display()
            )
            .as_bytes(),
        )?;
        let log = std::fs::File::create(dir.join("server.log"))?;
        let mut postgres = command(&bin.join("postgres"), user);
        postgres
            .arg("-D")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let server = postgres.spawn()?;
        let mut pg = Self {
            port,
            dir: dir.to_owned(),
            server,
        };
        let started = Instant::now();
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if let Ok(Some(status)) = pg.server.try_wait() {
                return Err(format!(
                    "--db postgres: the server exited ({status}); see {}",
                    dir.join("server.log").display()
                )
                .into());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("--db postgres: the server did not accept connections in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for sql in [
            format!("CREATE ROLE signer LOGIN PASSWORD '{PASSWORD}'"),
            "GRANT pg_read_all_stats TO signer".to_owned(),
            "CREATE DATABASE slashing OWNER signer".to_owned(),
        ] {
            let mut psql = Command::new(bin.join("psql"));
            psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(dir)
                .args(["-p", &port.to_string(), "-U", "postgres", "-c", &sql]);
            checked(psql, "psql")?;
        }
        pg.port = port;
        Ok(pg)
    }

    /// The tables an instance on this cluster adds at the end of its
    /// configuration (its `[slashing]` says `engine = "postgres"`): the
    /// connection, its password in `password_file` (relative to the
    /// configuration), and an audit log of its own.
    pub fn tables(&self, password_file: &str, audit: &str) -> String {
        format!(
            "\n[slashing.postgres]\nurl = \"postgresql://signer@127.0.0.1:{}/slashing\"\n\
             password_file = \"{password_file}\"\ntls = \"disable\"\n\n[audit]\nfile = \"{audit}\"\n",
            self.port
        )
    }

    pub fn password() -> &'static str {
        PASSWORD
    }

    /// The baseline: median µs of one `INSERT` + `COMMIT` round trip (one
    /// autocommit statement, `synchronous_commit = on`) plus one Ed25519
    /// signature, over `rounds`.
    pub fn commit_baseline(&self, rounds: usize) -> Result<f64, Error> {
        let key = signer::crypto::ed25519::Ed25519SecretKey::from_seed(&[7; 32])?;
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("signer")
            .password(PASSWORD)
            .dbname("slashing");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client
                .batch_execute(
                    "SET synchronous_commit = on; CREATE TABLE IF NOT EXISTS bench_baseline (n bigint)",
                )
                .await?;
            let st = client
                .prepare("INSERT INTO bench_baseline VALUES ($1)")
                .await?;
            let mut times = Vec::with_capacity(rounds);
            for i in 0..rounds {
                let started = Instant::now();
                client.execute(&st, &[&(i as i64)]).await?;
                std::hint::black_box(key.sign(&[i as u8; 120]));
                times.push(started.elapsed());
            }
            times.sort();
            Ok::<_, Error>(super::percentile(&times, 0.5))
        })
    }
}
