//! A fake HTTPS tracker (or torrent server) on loopback with a test PKI the test
//! makes: a CA and a certificate for `127.0.0.1` signed by it (rcgen), written to a
//! PEM bundle the client trusts through `TrackerConfig::ca_file` or, for a child
//! process, `SSL_CERT_FILE`. It serves scripted responses through rustls, with the
//! bounded waits of [`super::http_server`]. Reusable for a download through HTTPS:
//! serve a tracker body listing the seeder, and point the torrent at `url()`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use super::http_server::{serve_on, Scripted};

/// A test certificate authority and a server certificate it signed.
pub struct TestPki {
    /// The CA's certificate, PEM, in a file: what the client is told to trust.
    pub ca_file: PathBuf,
    /// The server side: the certificate chain and key, ready for rustls.
    pub server: Arc<rustls::ServerConfig>,
    _dir: tempfile::TempDir,
}

/// How the server certificate should be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaf {
    /// Valid now, for 127.0.0.1, ::1 and localhost.
    Good,
    /// Valid for those names, but expired in 2001.
    Expired,
    /// Valid now, but only for `tracker.example`.
    OtherName,
}

impl TestPki {
    /// A fresh CA ("bitloop test CA n", a name of its own) and a server certificate
    /// of the given kind.
    pub fn new(leaf: Leaf) -> TestPki {
        static SERIAL: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("bitloop test CA {serial}"));
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let names: Vec<String> = match leaf {
            Leaf::OtherName => vec!["tracker.example".into()],
            _ => vec!["127.0.0.1".into(), "::1".into(), "localhost".into()],
        };
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "bitloop test tracker");
        if leaf == Leaf::Expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca_cert.der().clone()];
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, PrivatePkcs8KeyDer::from(key.serialize_der()).into())
            .unwrap();
        TestPki {
            ca_file,
            server: Arc::new(server),
            _dir: dir,
        }
    }
}

/// Serves `responses` over HTTPS on 127.0.0.1 with `pki`'s certificate.
pub fn serve_https(pki: &TestPki, responses: Vec<Vec<u8>>) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    serve_on(listener, responses, Some(pki.server.clone()))
}
