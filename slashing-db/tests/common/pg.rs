//! A real PostgreSQL for tests: `initdb` into a temporary directory, the
//! server started as a child process on a free loopback port (as the
//! `postgres` user when the tests run as root — PostgreSQL refuses to run as
//! root), a role with a password, and one fresh schema per test database.
//! Nothing is mocked. If PostgreSQL is not installed, tests fail with a
//! message saying what to install (`scripts/test` installs it).
//!
//! Shared by the slashing-db tests and (through `#[path]`) the end-to-end
//! tests of the `tests` crate.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The login the tests' signer uses, and its password.
pub const USER: &str = "signer";
pub const PASSWORD: &str = "signer-test-password";

/// A running PostgreSQL cluster; stopped (SIGKILL of the postmaster, then
/// its directory removed) when dropped.
pub struct PgCluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub bin: PathBuf,
    /// Run server programs as this user (when the tests run as root).
    pub run_as: Option<String>,
    server: Option<Child>,
    next_schema: AtomicU32,
    /// Keeps the port ours while the server is down (see `reserve_port`).
    _port_lock: std::fs::File,
}

/// The directory with `initdb`, `postgres` and `psql`: `$PG_BIN`, else the
/// newest `/usr/lib/postgresql/<version>/bin` (Debian), else `PATH`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if let Some(dir) = p.parent() {
            return dir.to_owned();
        }
    }
    panic!(
        "PostgreSQL server programs (initdb, postgres) not found: install Debian's `postgresql` \
         package (scripts/test does), or set PG_BIN to the directory holding them"
    );
}

/// A free port that no other test process takes while the returned lock
/// file is open. Without it, a port freed by killing a cluster can be handed
/// to another test's cluster (tests run as parallel processes), and a client
/// reconnecting to the killed one lands in a stranger's database.
pub fn reserve_port() -> (u16, std::fs::File) {
    let dir = std::env::temp_dir().join("signer-test-ports");
    std::fs::create_dir_all(&dir).expect("creating the port lock directory");
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let port = l.local_addr().expect("local address").port();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
            .expect("opening a port lock file");
        if f.try_lock().is_ok() {
            return (port, f);
        }
    }
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PgCluster({}, port {})",
            self.dir.path().display(),
            self.port
        )
    }
}

impl PgCluster {
    /// `initdb` and start a new cluster. `extra` lines go to postgresql.conf.
    pub fn start(extra: &str) -> Self {
        Self::start_at(None, extra)
    }

    /// [`PgCluster::start`] with the data directory under `dir` (a real disk,
    /// for measurements), not on tmpfs.
    pub fn start_in(dir: &Path, extra: &str) -> Self {
        Self::start_at(Some(dir), extra)
    }

    fn start_at(under: Option<&Path>, extra: &str) -> Self {
        let bin = bin_dir();
        let root = unsafe_is_root();
        let run_as = root.then(|| "postgres".to_owned());
        // On tmpfs when there is one: the rule suites run thousands of
        // durable commits, and fsync on tmpfs costs nothing. (The engine
        // still refuses fsync = off; the crash tests use a real disk.)
        let dir = test_dir(under);
        if let Some(user) = &run_as {
            chown_to(dir.path(), user);
        }
        let data = dir.path().join("data");
        let pwfile = dir.path().join("superuser-password");
        std::fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n")).expect("writing pwfile");
        if let Some(user) = &run_as {
            chown_to(&pwfile, user);
        }
        let mut initdb = Command::new(bin.join("initdb"));
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
        run_checked(as_user(initdb, run_as.as_deref()), "initdb");
        let (port, port_lock) = reserve_port();
        // Dynamic shared memory as files in the data directory (removed with
        // it), not in /dev/shm, where every SIGKILLed cluster left its own.
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             fsync = on\nsynchronous_commit = on\nmax_connections = 200\nshared_buffers = 32MB\n\
             dynamic_shared_memory_type = mmap\n\
             logging_collector = off\n{extra}\n",
            dir.path().display()
        );
        append(&data.join("postgresql.conf"), &conf);
        let mut cluster = Self {
            dir,
            port,
            bin,
            run_as,
            server: None,
            next_schema: AtomicU32::new(0),
            _port_lock: port_lock,
        };
        cluster.launch();
        cluster.psql(&format!("CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'"));
        // What docs/ha.md tells operators to grant: reading whether standbys
        // are synchronous.
        cluster.psql(&format!("GRANT pg_read_all_stats TO {USER}"));
        cluster.psql(&format!("CREATE DATABASE slashing OWNER {USER}"));
        cluster
    }

    /// A hot standby of this cluster, streaming from it (pg_basebackup,
    /// then started on a port of its own). Synchronous once the primary
    /// names it: see [`PgCluster::require_synchronous_standby`].
    pub fn standby(&self) -> Self {
        let dir = test_dir(None);
        if let Some(user) = &self.run_as {
            chown_to(dir.path(), user);
        }
        let data = dir.path().join("data");
        let mut backup = Command::new(self.bin.join("pg_basebackup"));
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"]);
        let mut backup = as_user(backup, self.run_as.as_deref());
        backup.env("PGPASSWORD", SUPERUSER_PASSWORD);
        run_checked(backup, "pg_basebackup");
        let (port, port_lock) = reserve_port();
        append(
            &data.join("postgresql.conf"),
            &format!(
                "port = {port}\nunix_socket_directories = '{}'\n",
                dir.path().display()
            ),
        );
        append(
            &data.join("postgresql.auto.conf"),
            &format!(
                "primary_conninfo = 'host=127.0.0.1 port={} user=postgres password={SUPERUSER_PASSWORD} application_name=standby{port}'\n",
                self.port
            ),
        );
        let mut standby = Self {
            dir,
            port,
            bin: self.bin.clone(),
            run_as: self.run_as.clone(),
            server: None,
            next_schema: AtomicU32::new(1000),
            _port_lock: port_lock,
        };
        standby.launch();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql(&format!(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'standby{port}' AND state = 'streaming'"
        )) != "1"
        {
            assert!(Instant::now() < deadline, "the standby did not stream within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        standby
    }

    /// Makes every commit wait for a standby's acknowledgement (any standby),
    /// and waits until one is synchronous.
    pub fn require_synchronous_standby(&self) {
        self.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        self.psql("SELECT pg_reload_conf()");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "0"
        {
            assert!(
                Instant::now() < deadline,
                "no standby became synchronous within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Promotes this standby to primary (waits until it is).
    pub fn promote(&self) {
        assert_eq!(self.psql("SELECT pg_promote()"), "t", "promotion failed");
    }

    /// The server's log (stdout and stderr of the postmaster).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (after `start`, or after `kill`/`stop`).
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("server log");
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D").arg(self.data_dir());
        let mut cmd = as_user(cmd, self.run_as.as_deref());
        // A process group of its own, so `kill` can signal the postmaster and
        // its helpers at once (backends call setsid(): see `stop_with`).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.server = Some(cmd.spawn().expect("starting postgres"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                panic!(
                    "postgres exited ({status}) at start; log:\n{}",
                    std::fs::read_to_string(self.log_path()).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not become ready in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the server — the postmaster and every backend, as a crash
    /// of its host would — and waits until none is left.
    pub fn kill(&mut self) {
        self.stop_with("-KILL", true);
    }

    /// Shuts the server down as `pg_ctl stop -m fast` does (SIGINT to the
    /// postmaster: sessions are ended, a checkpoint written).
    pub fn stop_fast(&mut self) {
        self.stop_with("-INT", false);
    }

    /// Shuts the server down as `pg_ctl stop -m immediate` does (SIGQUIT to
    /// the postmaster: no checkpoint, WAL replayed at the next start).
    pub fn stop_immediate(&mut self) {
        self.stop_with("-QUIT", false);
    }

    fn stop_with(&mut self, signal: &str, whole_group: bool) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        let group = format!("-{}", child.id());
        let target = if whole_group {
            group.clone()
        } else {
            child.id().to_string()
        };
        // The System V interlock segment (postmaster.pid, line 7: key, id):
        // a server that shuts down removes it, a SIGKILLed one leaves it
        // behind, and the kernel's limit (4096) is reached after some dozen
        // test runs, when no cluster can start any more.
        let leaked_segment = whole_group
            .then(|| std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok())
            .flatten()
            .and_then(|pid| {
                pid.lines()
                    .nth(6)?
                    .split_whitespace()
                    .nth(1)
                    .map(str::to_owned)
            });
        // Backends call setsid(): they are not in the postmaster's process
        // group, and a backend of a SIGKILLed postmaster can still commit one
        // more transaction before it notices (seen: a decision committed
        // "while the server was down"). A host crash takes them too: freeze
        // the postmaster (it forks nothing more), kill its children, then it.
        let mut children = Vec::new();
        if whole_group {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-STOP", &pid]).status();
            if let Ok(out) = Command::new("pgrep").args(["-P", &pid]).output() {
                children = String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
            }
            for c in &children {
                let _ = Command::new("kill").args(["-KILL", c]).status();
            }
        }
        let _ = Command::new("kill").args([signal, "--", &target]).status();
        let _ = child.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie nobody has reaped yet (it runs nothing).
        let alive = |pid: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|st| st.rsplit_once(") ").map(|(_, rest)| rest.to_owned()))
                .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
        };
        for c in &children {
            while alive(c) {
                assert!(
                    Instant::now() < deadline,
                    "a postgres backend outlived SIGKILL for 10 s"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("kill")
            .args(["-0", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "postgres backends outlived the postmaster ({signal}) for 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(id) = leaked_segment {
            let _ = Command::new("ipcrm")
                .args(["-m", &id])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Runs SQL as the superuser over the Unix socket, returning stdout.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]);
        let out = run_checked(as_user(cmd, self.run_as.as_deref()), "psql");
        String::from_utf8_lossy(&out).trim().to_owned()
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// A fresh, empty schema of the `slashing` database, owned by [`USER`].
    pub fn new_schema(&self) -> String {
        let n = self.next_schema.fetch_add(1, Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        self.psql_in(
            "slashing",
            &format!("CREATE SCHEMA {name} AUTHORIZATION {USER};"),
        );
        name
    }

    /// A connection config for [`USER`] over TCP, using `schema`.
    pub fn config(&self, schema: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(PASSWORD)
            .dbname("slashing")
            .options(format!("-c search_path={schema}"));
        c
    }
}

/// A failing test shows what its server logged last.
impl Drop for PgCluster {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- last lines of the PostgreSQL log (port {}) ---",
                self.port
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

fn unsafe_is_root() -> bool {
    // No libc in this crate's tests: ask `id`.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The superuser's password (replication connections use it).
const SUPERUSER_PASSWORD: &str = "postgres-test-password";

/// A temporary directory for a cluster: under `under`, else
/// `$SIGNER_PG_TEST_DIR`, else tmpfs when there is one.
fn test_dir(under: Option<&Path>) -> tempfile::TempDir {
    let mut builder = tempfile::Builder::new();
    builder.prefix("signer-pg-");
    match under
        .map(Path::to_owned)
        .or_else(|| std::env::var_os("SIGNER_PG_TEST_DIR").map(PathBuf::from))
    {
        Some(d) => builder.tempdir_in(d),
        None if Path::new("/dev/shm").is_dir() => builder.tempdir_in("/dev/shm"),
        None => builder.tempdir(),
    }
    .expect("temp dir")
}

fn chown_to(path: &Path, user: &str) {
    run_checked(
        {
            let mut c = Command::new("chown");
            c.arg(format!("{user}:")).arg(path);
            c
        },
        "chown",
    );
}

/// Runs `cmd` as `user` through setpriv, which execs (no fork in between)
/// and makes the program die with the test process that started it, so a
/// test that panics or is killed leaves no server behind.
fn as_user(cmd: Command, user: Option<&str>) -> Command {
    let mut c = Command::new("setpriv");
    if let Some(user) = user {
        c.arg(format!("--reuid={user}"))
            .arg(format!("--regid={user}"))
            .arg("--init-groups");
    }
    c.arg("--pdeathsig=KILL")
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    c
}

fn run_checked(mut cmd: Command, what: &str) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {what} ({cmd:?}): {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("opening postgresql.conf");
    f.write_all(text.as_bytes())
        .expect("writing postgresql.conf");
}
