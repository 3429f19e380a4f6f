//! A throwaway PostgreSQL cluster for the tests: started once per test binary from the
//! system's `initdb` / `pg_ctl` (Debian's `postgresql` package) on a Unix socket in a temporary
//! directory, stopped (`-m immediate`) and removed by a watchdog when the test binary exits.
//! `MINDER_TEST_POSTGRES_URL` points the tests at a server of your own instead. With neither,
//! every test fails saying what to install: they never pass without a server.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the tests' server is: a base URL without a database name, to which `dbname=` is added.
struct Server {
    /// `host=... port=... user=...` in URL query form.
    params: String,
    /// For a cluster of our own: its data directory and `pg_ctl`, to restart it.
    own: Option<(PathBuf, PathBuf, String)>,
    /// For a cluster of our own: its TCP URL (without a database) and its certificate.
    tls: Option<(String, PathBuf)>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL tool as the `postgres` user when we are root (initdb refuses root).
fn as_server_user(tool: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(tool);
        c
    } else {
        Command::new(tool)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start() -> Server {
    if let Ok(url) = std::env::var("MINDER_TEST_POSTGRES_URL") {
        return Server {
            params: url,
            own: None,
            tls: None,
        };
    }
    let Some(bin) = bin_dir() else {
        panic!(
            "the PostgreSQL tests need a server: install Debian's `postgresql` package \
             (initdb and pg_ctl under /usr/lib/postgresql/*/bin), or set \
             MINDER_TEST_POSTGRES_URL=postgres://user:password@host/db"
        );
    };
    let dir = tempfile::Builder::new()
        .prefix("minder-pg-")
        .tempdir_in("/tmp")
        .unwrap()
        .keep();
    let data = dir.join("data");
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(&dir);
                c
            },
            "chown",
        );
    }
    let mut initdb = as_server_user(&bin.join("initdb"));
    initdb
        .args([
            "-A",
            "trust",
            "--no-locale",
            "-E",
            "UTF8",
            "-U",
            "postgres",
            "-D",
        ])
        .arg(&data);
    run(initdb, "initdb");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // TLS on 127.0.0.1 (a Unix socket carries no TLS): a CA made here, and a server
    // certificate it signed for 127.0.0.1.
    let ca = dir.join("ca.crt");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let openssl = |args: &[&str], what: &str| {
        let mut c = Command::new("openssl");
        c.args(args).current_dir(&dir);
        run(c, what);
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=minder test CA"],
        ]
        .concat()
        .into_iter()
        .chain(["-keyout", "ca.key", "-out", "ca.crt"])
        .collect::<Vec<_>>(),
        "openssl req (the test CA)",
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=localhost"]]
            .concat()
            .into_iter()
            .chain(["-keyout", "server.key", "-out", "server.csr"])
            .collect::<Vec<_>>(),
        "openssl req (the server's key)",
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
        "openssl x509 (the server's certificate)",
    );
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["postgres:postgres"]).arg(&key).arg(&cert);
                c
            },
            "chown",
        );
    }
    let options = format!(
        "-c listen_addresses=127.0.0.1 -k {dir} -c port={port} -c max_connections=200 \
         -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key",
        dir = dir.display()
    );
    let pg_ctl = bin.join("pg_ctl");
    let mut start = as_server_user(&pg_ctl);
    start
        .args(["-w", "-D"])
        .arg(&data)
        .args(["-o", &options, "-l"])
        .arg(dir.join("log"))
        .arg("start");
    run(start, "pg_ctl start");
    // Stops the cluster and removes it once this test binary has exited.
    let stop = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {runuser} {pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        runuser = if is_root() { "runuser -u postgres --" } else { "" },
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        dir = dir.display(),
    );
    // Not waited for: it outlives this process on purpose (`setsid`, its own session).
    #[allow(clippy::zombie_processes)]
    Command::new("setsid")
        .args(["sh", "-c", &stop])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot start the cluster's watchdog");
    Server {
        params: format!(
            "postgresql://postgres@/postgres?host={}&port={port}",
            dir.display()
        ),
        own: Some((data, pg_ctl, options)),
        tls: Some((format!("postgresql://postgres@127.0.0.1:{port}"), ca)),
    }
}

fn server() -> &'static Server {
    SERVER.get_or_init(start)
}

/// The URL of the server's `postgres` database.
pub fn admin_url() -> String {
    server().params.clone()
}

/// The URL of `db` on the server (`/postgres` replaced by `/<db>`).
pub fn url_of(db: &str) -> String {
    let base = admin_url();
    match base.split_once("/postgres?") {
        Some((head, tail)) => format!("{head}/{db}?{tail}"),
        None => match base.rsplit_once('/') {
            Some((head, _)) => format!("{head}/{db}"),
            None => base,
        },
    }
}

/// A new, empty database for one test; returns its URL.
pub async fn fresh_db(name: &str) -> String {
    let db = format!("t_{name}_{}", std::process::id());
    let (client, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("cannot connect to the test server");
    tokio::spawn(connection);
    for statement in [
        format!("DROP DATABASE IF EXISTS {db}"),
        format!("CREATE DATABASE {db}"),
    ] {
        client.batch_execute(&statement).await.unwrap();
    }
    url_of(&db)
}

/// Runs SQL on a test database.
pub async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("cannot connect to the test database");
    tokio::spawn(connection);
    client
}

/// Restarts the tests' own cluster (fast shutdown, then start), for a test of a restart.
pub fn restart() {
    let Some((data, pg_ctl, options)) = &server().own else {
        panic!("restarting needs the tests' own cluster (unset MINDER_TEST_POSTGRES_URL)");
    };
    let mut stop = as_server_user(pg_ctl);
    stop.args(["-w", "-m", "immediate", "-D"])
        .arg(data)
        .arg("stop");
    run(stop, "pg_ctl stop");
    let mut start = as_server_user(pg_ctl);
    start
        .args(["-w", "-D"])
        .arg(data)
        .args(["-o", options, "-l"])
        .arg(data.parent().unwrap().join("log"))
        .arg("start");
    run(start, "pg_ctl start");
}

/// Makes the tests' own cluster ask `role` for its password (scram-sha-256) on the socket, and
/// reloads it.
pub async fn require_password(role: &str) {
    let Some((data, _, _)) = &server().own else {
        panic!("password checks need the tests' own cluster (unset MINDER_TEST_POSTGRES_URL)");
    };
    let hba = data.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    if !old.contains(&format!("local all {role} scram-sha-256")) {
        std::fs::write(&hba, format!("local all {role} scram-sha-256\n{old}")).unwrap();
    }
    sql(&admin_url())
        .await
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .unwrap();
}

/// The URL of `db` over TCP with `sslmode=require`, and the server's certificate (its own CA).
pub fn tls_url(db: &str) -> (String, PathBuf) {
    let Some((base, cert)) = &server().tls else {
        panic!("TLS checks need the tests' own cluster (unset MINDER_TEST_POSTGRES_URL)");
    };
    (format!("{base}/{db}?sslmode=require"), cert.clone())
}
