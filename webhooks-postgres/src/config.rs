//! Reading a connection URL, and naming a server without its password.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// How long making one connection may take when the URL does not say
/// (`connect_timeout`): a server that does not answer fails the call rather
/// than hanging it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a URL asks for: the driver's settings, and TLS as libpq's `sslmode`
/// and `sslrootcert` describe it (the driver knows neither `verify-ca` nor
/// `verify-full`, so this crate reads them).
pub(crate) struct Settings {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: TlsMode,
    pub(crate) root_certificates: Option<PathBuf>,
    pub(crate) target: Target,
}

/// libpq's `sslmode`, with libpq's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, its certificate unchecked (`allow` and
    /// `prefer`, the default).
    Prefer,
    /// TLS or no connection, the certificate unchecked.
    Require,
    /// TLS, the certificate's chain checked against the root certificates.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self, Error> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(Error::InvalidUrl {
                    reason: format!(
                        "unknown sslmode {other:?}: use disable, allow, prefer, require, verify-ca or verify-full"
                    ),
                });
            }
        })
    }

    /// The driver's mode: whether to ask for TLS and whether to insist.
    fn driver(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode;
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// Reads a `postgres://` or `postgresql://` URL. Errors never repeat it.
pub(crate) fn parse(url: &str) -> Result<Settings, Error> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(Error::InvalidUrl { reason: "expected a postgres:// or postgresql:// URL".to_owned() });
    }
    let mut parsed = url::Url::parse(url).map_err(|error| Error::InvalidUrl { reason: error.to_string() })?;
    let mut tls = TlsMode::Prefer;
    let mut root_certificates = None;
    let mut kept = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match &*key {
            "sslmode" => tls = TlsMode::parse(&value)?,
            "sslrootcert" => root_certificates = Some(PathBuf::from(&*value)),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    // As libpq does: root certificates given make `require` check the chain.
    if tls == TlsMode::Require && root_certificates.is_some() {
        tls = TlsMode::VerifyCa;
    }
    let mut config = tokio_postgres::Config::from_str(parsed.as_str())
        .map_err(|error| Error::InvalidUrl { reason: error.to_string() })?;
    config.ssl_mode(tls.driver());
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        // Names the store's sessions in pg_stat_activity.
        config.application_name("webhooks-postgres");
    }
    let target = Target::of(&config);
    Ok(Settings { config, tls, root_certificates, target })
}

/// The server a store talks to, as it may be shown in logs and errors: the
/// user, the host and port, the database, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    user: String,
    address: String,
    database: String,
}

impl Target {
    /// From a driver configuration, before any connection is made.
    fn of(config: &tokio_postgres::Config) -> Self {
        use tokio_postgres::config::Host;
        let ports = config.get_ports();
        let address = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(n, host)| {
                let port = ports.get(n).or(ports.first()).copied().unwrap_or(5432);
                match host {
                    Host::Tcp(name) => format!("{name}:{port}"),
                    Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        let user = config.get_user().unwrap_or_default().to_owned();
        let database = config.get_dbname().map_or_else(|| user.clone(), str::to_owned);
        Self { user, address, database }
    }

    /// From what a server says of the session (a pool built elsewhere).
    pub(crate) fn from_session(user: String, address: Option<String>, database: String) -> Self {
        Self { user, address: address.unwrap_or_else(|| "local socket".to_owned()), database }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres://{}@{}/{}", self.user, self.address, self.database)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_read_and_taken_out_of_the_url() {
        let settings =
            parse("postgresql://u:p@db.example.com:6543/app?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x")
                .unwrap();
        assert_eq!(settings.tls, TlsMode::VerifyFull);
        assert_eq!(settings.root_certificates, Some(PathBuf::from("/ca.pem")));
        assert_eq!(settings.config.get_application_name(), Some("x"));
        assert_eq!(settings.config.get_dbname(), Some("app"));
        assert_eq!(settings.target.to_string(), "postgres://u@db.example.com:6543/app");

        let defaults = parse("postgres://u:p@localhost/app").unwrap();
        assert_eq!(defaults.tls, TlsMode::Prefer);
        assert_eq!(defaults.config.get_application_name(), Some("webhooks-postgres"));
        assert_eq!(defaults.config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(defaults.target.to_string(), "postgres://u@localhost:5432/app");
        let require = parse("postgres://u@localhost/app?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            require.tls,
            TlsMode::VerifyCa,
            "as libpq: root certificates make require check the chain"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for url in [
            "mysql://u:hunter2@localhost/app",
            "postgres://u:hunter2@localhost/app?sslmode=sometimes",
            "postgres://u:hunter2@localhost:99999/app",
            "postgres://u:hunter2@localhost/app?nonsense=1",
            "postgres://u:hunter2@[::1/app",
        ] {
            let error = parse(url).err().unwrap_or_else(|| panic!("{url} is refused"));
            assert!(matches!(error, Error::InvalidUrl { .. }), "{error:?}");
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
