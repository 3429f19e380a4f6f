//! Connections: the URL (its password masked in messages, libpq's `sslrootcert`), TLS,
//! timeouts, and the errors that name the server.

use super::StoreError;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub(super) fn mask(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{scheme}://{name}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

pub(super) fn db_error(url: &str, doing: &str, e: tokio_postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    };
    StoreError::Database {
        url: url.to_string(),
        message: format!("{doing}: {detail}"),
    }
}

/// How long connecting may take unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one statement may take.
const STATEMENT_TIMEOUT: &str = "30s";

/// A connection's messages (notifications, and its end); polling them drives the connection.
pub(super) type Messages = futures::stream::BoxStream<
    'static,
    Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>,
>;

/// The URL's `sslrootcert=PATH` query parameter (libpq's; tokio-postgres does not know it),
/// and the URL without it.
pub(super) fn split_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None);
    };
    let mut root = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("sslrootcert=") {
            Some(path) => {
                root = Some(path.to_string());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, root)
}

/// The TLS connector for `sslmode=require`: the server's certificate is verified against
/// Mozilla's roots and the certificates (PEM) in the URL's `sslrootcert=PATH` or, without
/// one, in `PGSSLROOTCERT`, and its name checked, as libpq's `verify-full` would.
fn tls(url: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let fail = |message: String| StoreError::Database {
        url: url.to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let root = match split_root_cert(url).1 {
        Some(path) => Some(("sslrootcert", std::path::PathBuf::from(path))),
        None => std::env::var_os("PGSSLROOTCERT").map(|p| ("PGSSLROOTCERT", p.into())),
    };
    if let Some((from, path)) = root {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                fail(format!(
                    "cannot read the CA certificates in {from}={}: {e}",
                    path.display()
                ))
            })?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| fail(format!("a certificate in {from}: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| fail(format!("cannot set up TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Opens a connection, with TLS when the URL asks for it (`sslmode=require`; `prefer`, the
/// default, and `disable` connect without).
pub(super) async fn open_connection(
    url: &str,
    config: &Config,
) -> Result<(Client, Messages), StoreError> {
    use futures::StreamExt;
    fn messages<S, T>(mut connection: tokio_postgres::Connection<S, T>) -> Messages
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        futures::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed()
    }
    let failed = |e| db_error(url, "cannot connect", e);
    if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        let (client, connection) = config.connect(tls(url)?).await.map_err(failed)?;
        Ok((client, messages(connection)))
    } else {
        let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
        Ok((client, messages(connection)))
    }
}

pub(super) async fn connect_client(url: &str, config: &Config) -> Result<Client, StoreError> {
    let mut config = config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let connecting = open_connection(url, &config);
    let (client, mut connection) =
        match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connecting).await {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StoreError::Database {
                    url: url.to_string(),
                    message: format!("cannot connect: no answer within {CONNECT_TIMEOUT:?}"),
                })
            }
        };
    tokio::spawn(async move {
        use futures::StreamExt;
        while let Some(message) = connection.next().await {
            if let Err(e) = message {
                tracing::debug!(error = %e, "a PostgreSQL connection ended");
                break;
            }
        }
    });
    client
        .batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
        .await
        .map_err(|e| db_error(url, "cannot set the statement timeout", e))?;
    Ok(client)
}
