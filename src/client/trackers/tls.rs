//! HTTPS on the reactor's TCP stream: rustls' `ClientConnection` is sans-IO, so the
//! handshake and records are bytes in (`read_tls`, `process_new_packets`) and bytes
//! out (`write_tls`), fed from and to the stream's buffers. No blocking, no thread.
//!
//! Trusted roots: the bundle [`TrackerConfig::ca_file`](super::TrackerConfig) names,
//! else those `rustls-native-certs` finds (the bundle `SSL_CERT_FILE` names, else
//! the system's, `/etc/ssl/certs/ca-certificates.crt` on Debian). They are loaded
//! once, on the first HTTPS request, and shared by every connection after it. The
//! crypto provider is ring: smaller than aws-lc-rs and needs no cmake.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};

use crate::http::{HttpResponse, ResponseReader};
use crate::tracker::TrackerError;

/// The trusted roots, loaded on first use.
pub(super) struct Roots {
    ca_file: Option<PathBuf>,
    config: Option<Result<Arc<ClientConfig>, String>>,
}

impl Roots {
    pub(super) fn new(ca_file: Option<PathBuf>) -> Roots {
        Roots {
            ca_file,
            config: None,
        }
    }

    /// A TLS session with `host` (a DNS name or an IP literal, checked against the
    /// certificate).
    pub(super) fn session(&mut self, host: &str, port: u16) -> Result<Session, TrackerError> {
        let ca_file = self.ca_file.clone();
        let config = self.config.get_or_insert_with(|| load(ca_file)).clone();
        let name = format!("{host}:{port}");
        let config = config.map_err(|why| TrackerError::Tls(format!("{name}: {why}")))?;
        let server = ServerName::try_from(host.to_string())
            .map_err(|_| TrackerError::Tls(format!("{name}: not a valid TLS server name")))?;
        let connection = ClientConnection::new(config, server).map_err(|e| describe(&name, e))?;
        Ok(Session { connection, name })
    }
}

fn load(ca_file: Option<PathBuf>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let (certs, source): (Vec<CertificateDer<'static>>, String) = match &ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read trusted certificates from {}: {e}", path.display()))?;
            (certs, path.display().to_string())
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                log::debug!("trusted roots: {error}");
            }
            let source = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| "the system's roots".into());
            (found.certs, source)
        }
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("no trusted root certificates found in {source}"));
    }
    log::debug!("HTTPS: {added} trusted roots from {source}");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What was wrong, in words naming the tracker.
fn describe(name: &str, error: rustls::Error) -> TrackerError {
    let why = match &error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "its certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its certificate is not valid yet".to_string()
            }
            CertificateError::UnknownIssuer => "its certificate is issued by an unknown authority \
                 (not among the trusted roots; SSL_CERT_FILE can name a bundle that has it)"
                .to_string(),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "its certificate is for another name".to_string()
            }
            CertificateError::Revoked => "its certificate has been revoked".to_string(),
            CertificateError::BadSignature => {
                "its certificate has a bad signature (not made by the trusted authority it names)".to_string()
            }
            other => format!("bad certificate: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!("the server ended the handshake ({alert:?})"),
        other => other.to_string(),
    };
    TrackerError::Tls(format!("{name}: {why}"))
}

/// One TLS connection's state; the stream's bytes pass through it.
pub(super) struct Session {
    connection: ClientConnection,
    /// `host:port`, for messages.
    name: String,
}

impl Session {
    /// Queues plaintext; it is sent once the handshake is done.
    pub(super) fn send(&mut self, plain: &[u8]) -> Result<(), TrackerError> {
        self.connection
            .writer()
            .write_all(plain)
            .map_err(|e| TrackerError::Tls(format!("{}: {e}", self.name)))
    }

    /// TLS records to write to the stream (handshake messages, the request).
    pub(super) fn outgoing(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.connection.wants_write() {
            if self.connection.write_tls(&mut out).is_err() {
                break;
            }
        }
        out
    }

    /// Bytes from the stream: decrypts them and feeds the plaintext to `reader`.
    pub(super) fn receive(
        &mut self,
        mut data: &[u8],
        reader: &mut ResponseReader,
    ) -> Result<Option<HttpResponse>, TrackerError> {
        while !data.is_empty() {
            let n = self
                .connection
                .read_tls(&mut data)
                .map_err(|e| TrackerError::Tls(format!("{}: {e}", self.name)))?;
            if n == 0 {
                break;
            }
            let state = self
                .connection
                .process_new_packets()
                .map_err(|e| describe(&self.name, e))?;
            if let Some(response) = self.plaintext(reader)? {
                return Ok(Some(response));
            }
            if state.peer_has_closed() {
                return reader.finish().map(Some);
            }
        }
        Ok(None)
    }

    /// Feeds the decrypted bytes waiting in the session to `reader`.
    fn plaintext(&mut self, reader: &mut ResponseReader) -> Result<Option<HttpResponse>, TrackerError> {
        let mut buf = [0u8; 4096];
        loop {
            match self.connection.reader().read(&mut buf) {
                Ok(0) => return Ok(None), // close_notify: the caller finishes
                Ok(n) => {
                    if let Some(response) = reader.push(&buf[..n])? {
                        return Ok(Some(response));
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(TrackerError::Tls(format!("{}: {e}", self.name))),
            }
        }
    }

    /// The stream ended. A server may close without `close_notify` (many do); a
    /// body framed by length or chunks is complete either way, and a close-delimited
    /// one ends here.
    pub(super) fn eof(&mut self, reader: &mut ResponseReader) -> Result<HttpResponse, TrackerError> {
        if self.connection.is_handshaking() {
            return Err(TrackerError::Tls(format!(
                "{}: the server closed the connection during the TLS handshake",
                self.name
            )));
        }
        reader.finish()
    }
}
