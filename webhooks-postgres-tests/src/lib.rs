//! The PostgreSQL store's tests, and the throwaway databases they and the
//! workspace's end-to-end tests run on. Not published: nothing here reaches
//! a user's build.
//!
//! The server is the one `WEBHOOKS_POSTGRES_URL` names, or else one this
//! module starts from the machine's PostgreSQL binaries
//! (`/usr/lib/postgresql/*/bin`; as root on Debian, installed from Debian's
//! packages first when missing): a new cluster in a temporary directory, on
//! a free port of 127.0.0.1, with TLS when `openssl` is there to make a
//! certificate; one per test binary, stopped and removed when that process
//! exits. As root it runs as the `postgres` user, since PostgreSQL refuses
//! to run as root.
//!
//! A test that plays an outage starts a [`StoppableServer`] of its own,
//! which it may stop and start again without disturbing the other tests.
//!
//! Whether either can be had is decided when this test crate is built (the
//! workspace's root package runs the same detection): its build script sets `cfg(postgres_server)` (and `cfg(postgres_tls)` when a CA
//! certificate can be had too), and the tests carry
//! `#[cfg_attr(not(postgres_server), ignore = "...")]`, so a machine
//! without PostgreSQL reports them as ignored, never as passed.

use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use webhooks_postgres::{Error, PostgresStore};

/// The variable naming the server: a `postgres://` URL whose role may
/// create databases.
pub const URL_VARIABLE: &str = "WEBHOOKS_POSTGRES_URL";

/// The variable naming the PEM file of the CA that signed the server's
/// certificate, for the TLS tests against the server [`URL_VARIABLE`] names.
pub const CA_VARIABLE: &str = "WEBHOOKS_POSTGRES_CA";

/// The server's URL: the one [`URL_VARIABLE`] names, or else that of a
/// server started from the machine's PostgreSQL binaries.
///
/// # Panics
///
/// When there is neither (a test that needs a server fails rather than
/// passes without one: the build decides which tests to ignore), or when
/// the binaries are there but the server does not start; the message
/// carries its log.
pub fn server_url() -> String {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => url,
        _ => match local_server() {
            Some(server) => server.url.clone(),
            None => missing(&format!("{URL_VARIABLE} is not set and there are no PostgreSQL binaries")),
        },
    }
}

/// The CA certificate (a PEM file) that signed the server's certificate:
/// [`CA_VARIABLE`] when [`URL_VARIABLE`] names the server, or else the
/// started server's.
///
/// # Panics
///
/// When there is none, as [`server_url`].
pub fn server_ca() -> PathBuf {
    let ca = match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => {
            std::env::var_os(CA_VARIABLE).filter(|ca| !ca.is_empty()).map(PathBuf::from)
        }
        _ => local_server().and_then(|server| server.ca.clone()),
    };
    ca.unwrap_or_else(|| missing("there is no CA certificate for the server"))
}

/// Fails the test that needed what is missing: the build found it could be
/// had (`cfg(postgres_server)`, `cfg(postgres_tls)`), so its absence now is
/// a failure, never a pass.
fn missing(what: &str) -> ! {
    panic!("{what}; this test needs it (tests that cannot have it are built to be ignored)")
}

/// A server this process started.
struct LocalServer {
    url: String,
    ca: Option<PathBuf>,
    control: Control,
    /// Held open for the life of the server: when it is dropped, or the
    /// process ends for any reason, the pipe closes and the watcher at its
    /// other end stops the server and removes its directory.
    _watcher: ChildStdin,
}

/// What `pg_ctl` needs to stop a started server and start it again.
struct Control {
    pg_ctl: PathBuf,
    root: bool,
    dir: PathBuf,
    /// The server's options: its port, socket directory and settings.
    options: String,
}

impl Control {
    /// Starts the server on its data directory and waits until it accepts
    /// connections; the error carries its log.
    fn start(&self) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        run(
            as_server_user(self.root, &self.pg_ctl)
                .arg("-D")
                .arg(self.dir.join("data"))
                .arg("-l")
                .arg(self.dir.join("server.log"))
                .args(["-w", "-t", "60", "-o", &self.options, "start"])
                .stdout(Stdio::null())
                // Its own process group: Ctrl-C on the tests must not stop
                // it before the watcher cleans up.
                .process_group(0),
            "pg_ctl start",
        )
        .map_err(|error| {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            format!("{error}\n{log}")
        })
    }

    /// Stops the server at once, as a crash would: `pg_ctl stop -m
    /// immediate`, which cuts every connection mid-query and leaves
    /// recovery to the next start. Waits until it is down.
    fn stop(&self) -> Result<(), String> {
        run(
            as_server_user(self.root, &self.pg_ctl).arg("-D").arg(self.dir.join("data")).args([
                "-w",
                "-t",
                "60",
                "-m",
                "immediate",
                "stop",
            ]),
            "pg_ctl stop",
        )
    }
}

/// A server of the caller's own, which it may stop and start again to
/// test how a store rides out an outage: [`stop`](Self::stop) is a crash of
/// the server (`pg_ctl stop -m immediate`), [`start`](Self::start) brings it
/// back on the same port with the same data. Started from the machine's
/// PostgreSQL binaries as the shared server is (never the one
/// [`URL_VARIABLE`] names: that one is not the caller's to stop), without
/// TLS, and with `synchronous_commit` on, so that a commit acknowledged
/// before the crash survives it; stopped and removed when dropped or when
/// the process exits.
pub struct StoppableServer {
    server: LocalServer,
}

impl std::fmt::Debug for StoppableServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL holds the test password: the port is enough.
        f.debug_struct("StoppableServer").field("options", &self.server.control.options).finish()
    }
}

impl StoppableServer {
    /// Makes a new cluster and starts it. Blocks for the second or two
    /// that `initdb` and the start take.
    ///
    /// # Panics
    ///
    /// Without PostgreSQL binaries, or when the server does not start; the
    /// message carries its log.
    pub fn start_new() -> Self {
        let bin = binaries().or_else(install).unwrap_or_else(|| {
            missing("there are no PostgreSQL binaries to start a server of the test's own")
        });
        let server =
            start(&bin, true).unwrap_or_else(|error| panic!("could not start a PostgreSQL server: {error}"));
        Self { server }
    }

    /// The server's URL, as [`server_url`]'s: its role may create databases
    /// ([`TestDatabase::create_on`]).
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m
    /// immediate`): every connection is cut mid-query. Returns once it is
    /// down.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails (the server was not running, say); the error
    /// carries its output.
    pub fn stop(&self) -> std::io::Result<()> {
        self.server.control.stop().map_err(std::io::Error::other)
    }

    /// Starts the stopped server again, on the same port with the same
    /// data (recovering what a crash left); returns once it accepts
    /// connections.
    ///
    /// # Errors
    ///
    /// When `pg_ctl` fails (the port was taken meanwhile, say); the error
    /// carries the server's log.
    pub fn start(&self) -> std::io::Result<()> {
        self.server.control.start().map_err(std::io::Error::other)
    }
}

/// The server of this test binary, started at the first call; `None`
/// without PostgreSQL binaries.
fn local_server() -> Option<&'static LocalServer> {
    static SERVER: OnceLock<Option<LocalServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let bin = binaries().or_else(install)?;
            Some(
                start(&bin, false)
                    .unwrap_or_else(|error| panic!("could not start a PostgreSQL server: {error}")),
            )
        })
        .as_ref()
}

/// The newest PostgreSQL server's binaries: a machine may have a client
/// without a server.
fn binaries() -> Option<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("bin/initdb").is_file())
        .map(|entry| {
            let version = entry
                .file_name()
                .to_string_lossy()
                .split('.')
                .map(|part| part.parse().unwrap_or(0))
                .collect();
            (version, entry.path().join("bin"))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

/// Installs PostgreSQL from Debian's packages, as root, when it is missing:
/// once for every test binary of the run (a lock serializes them), without
/// the cluster the package would start. `None` where it cannot.
fn install() -> Option<PathBuf> {
    if !is_root() || !Path::new("/usr/bin/apt-get").is_file() {
        return None;
    }
    let script = "set -e
        [ -n \"$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null)\" ] && exit 0
        policy=''
        if [ ! -e /usr/sbin/policy-rc.d ]; then
            printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
            policy=/usr/sbin/policy-rc.d
        fi
        trap 'rm -f $policy' EXIT
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql openssl";
    eprintln!("PostgreSQL is missing: installing it from Debian's packages for the tests");
    let mut command = Command::new("flock");
    command.args(["/tmp/webhooks-postgres-install.lock", "sh", "-c", script]);
    match run(&mut command, "apt-get install postgresql") {
        Ok(()) => binaries(),
        Err(error) => panic!("could not install PostgreSQL: {error}"),
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A command run as the server's user: `postgres` when running as root.
fn as_server_user(root: bool, program: impl AsRef<std::ffi::OsStr>) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs `command`; its output is the error when it fails.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command.stdin(Stdio::null()).output().map_err(|error| format!("{what}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Makes a cluster in a new temporary directory and starts it, as
/// `.ci/postgres` does: for a server shared by the tests with TLS, when
/// `openssl` can make a certificate; for one that is to be stopped mid-run
/// ([`StoppableServer`]) without TLS and with every commit written before
/// it is acknowledged.
fn start(bin: &Path, stoppable: bool) -> Result<LocalServer, String> {
    let tls = !stoppable;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("webhooks-postgres-test-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir(&dir).map_err(|error| format!("creating {}: {error}", dir.display()))?;
    // The watcher first, so the directory goes even if starting fails. It
    // is a process group of its own, so Ctrl-C on the tests does not stop
    // it before it cleans up.
    let pg_ctl = bin.join("pg_ctl");
    let stop = format!(
        "read _ignored; {} {} -D {}/data -m immediate stop >/dev/null 2>&1; rm -rf {}",
        if root { "runuser -u postgres --" } else { "" },
        pg_ctl.display(),
        dir.display(),
        dir.display()
    );
    let mut watcher = {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|error| format!("starting the clean-up watcher: {error}"))?
    };
    let watcher = watcher.stdin.take().ok_or("the watcher has no stdin")?;
    if root {
        run(Command::new("chown").arg("postgres:").arg(&dir), "chown")?;
    }
    run(Command::new("chmod").arg("700").arg(&dir), "chmod")?;

    let password = "webhooks-test-pw";
    run(
        as_server_user(root, "sh")
            .args(["-c", &format!("echo {password} > \"$1\"/password"), "sh"])
            .arg(&dir),
        "writing the password",
    )?;
    run(
        as_server_user(root, bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-U", "webhooks", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync"])
            .arg(format!("--pwfile={}", dir.join("password").display())),
        "initdb",
    )?;

    // A throwaway CA and a certificate it signs for 127.0.0.1, so a client
    // can verify the server fully, when openssl is there to make them.
    let certificates = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=webhooks-test-ca \
            -keyout ca.key -out ca.crt &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout data/server.key -out server.csr &&
        printf '%s\\n' subjectAltName=IP:127.0.0.1 basicConstraints=CA:FALSE extendedKeyUsage=serverAuth > server.ext &&
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile server.ext -out data/server.crt &&
        chmod 600 data/server.key";
    let tls = tls
        && run(as_server_user(root, "sh").current_dir(&dir).args(["-c", certificates]), "openssl").is_ok();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|error| format!("finding a free port: {error}"))?
        .port();
    // A scratch cluster: nothing must survive a power cut. A server that
    // is to be stopped mid-run keeps `synchronous_commit`, though: without
    // it a commit is acknowledged before the server writes it, and an
    // immediate stop loses the last ones.
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off \
         -c synchronous_commit={} -c full_page_writes=off -c ssl={}",
        dir.display(),
        if stoppable { "on" } else { "off" },
        if tls { "on" } else { "off" }
    );
    let control = Control { pg_ctl, root, dir: dir.clone(), options };
    control.start()?;
    Ok(LocalServer {
        url: format!("postgres://webhooks:{password}@127.0.0.1:{port}/postgres"),
        ca: tls.then(|| dir.join("ca.crt")),
        control,
        _watcher: watcher,
    })
}

/// A new, empty database on the server, dropped (with whatever is still
/// connected to it) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates a database on the server [`server_url`] finds.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or refuses to create a database.
    ///
    /// # Panics
    ///
    /// As [`server_url`].
    pub async fn create() -> Result<Self, Error> {
        Self::create_on(&server_url()).await
    }

    /// Creates a database on the server at `server`.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or refuses to create a database.
    pub async fn create_on(server: &str) -> Result<Self, Error> {
        let name = format!("webhooks_test_{}", uuid::Uuid::now_v7().simple());
        admin(server, &format!("CREATE DATABASE {name}")).await?;
        let mut url =
            url::Url::parse(server).map_err(|error| Error::InvalidUrl { reason: error.to_string() })?;
        url.set_path(&name);
        Ok(Self { server: server.to_owned(), name, url: url.into() })
    }

    /// The database's URL: the server's, naming this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store on the database: a pool of its own each call, as another
    /// instance of the host application would have.
    ///
    /// # Errors
    ///
    /// As [`PostgresStore::connect`].
    pub async fn store(&self) -> Result<PostgresStore, Error> {
        PostgresStore::connect(&self.url).await
    }
}

impl Drop for TestDatabase {
    /// Drops the database from a thread of its own, since `Drop` cannot
    /// await and may run on a runtime that is shutting down. Failing, it
    /// leaves the database for the server's owner to remove.
    fn drop(&mut self) {
        let (server, sql) =
            (self.server.clone(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(admin(&server, &sql)).map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            let line = format!("could not drop the test database {}\n", self.name);
            let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
        }
    }
}

/// Runs one statement on its own connection to `server`.
async fn admin(server: &str, sql: &str) -> Result<(), Error> {
    let pool = webhooks_postgres::pool(server)?;
    let client =
        pool.get().await.map_err(|source| Error::Connect { target: "the test server".to_owned(), source })?;
    client
        .batch_execute(sql)
        .await
        .map_err(|source| Error::Query { operation: "run a statement on the test server", source })
}
