//! TLS: listeners named `tls://`, `json+tls://`, `raw+tls://` and
//! `--http https://` serve their clients through rustls. The certificate is
//! read from PEM files at start and again on every reload, so a renewed
//! certificate is used by the next handshake while connected clients go
//! on; with a client CA, clients must present a certificate, whose
//! subject's common name names them.

mod records;
mod transport;

pub(crate) use transport::{handshake as accept, TlsTransport};

use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;

use crate::config::TlsFiles;
use crate::sync::{read, write};

/// The names a `--tls-self-signed` certificate is made for.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The server's TLS settings: what every handshake uses, swapped whole on
/// reload.
#[derive(Debug)]
pub(crate) struct ServerTls {
    files: TlsFiles,
    /// For the TCP listeners.
    streams: RwLock<Arc<ServerConfig>>,
    /// For HTTPS: the same certificate, offering HTTP/1.1 by ALPN (the
    /// WebSocket upgrade is an HTTP/1.1 request).
    http: RwLock<Arc<ServerConfig>>,
    /// Where a `--tls-self-signed` certificate was written, for clients to
    /// trust.
    self_signed: Option<std::path::PathBuf>,
}

/// What a certificate and key are read as.
type Credentials = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

impl ServerTls {
    /// Reads the certificate, key and client CA, or makes a self-signed
    /// certificate; errors name the file and what is wrong with it.
    pub(crate) fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        let (credentials, self_signed) = if files.self_signed {
            let (credentials, path) = self_signed()?;
            (credentials, Some(path))
        } else {
            (read_credentials(files)?, None)
        };
        let (streams, http) = server_configs(files, credentials)?;
        Ok(ServerTls {
            files: files.clone(),
            streams: RwLock::new(streams),
            http: RwLock::new(http),
            self_signed,
        })
    }

    /// Reads the files again; on an error the current certificate stays.
    /// A self-signed certificate is kept: there is no file to re-read.
    pub(crate) fn reload(&self, files: &TlsFiles) -> anyhow::Result<()> {
        if files.self_signed && self.files.self_signed {
            return Ok(());
        }
        let (streams, http) = server_configs(files, read_credentials(files)?)?;
        *write(&self.streams) = streams;
        *write(&self.http) = http;
        Ok(())
    }

    /// The settings of a TCP listener's next handshake.
    pub(crate) fn streams(&self) -> Arc<ServerConfig> {
        read(&self.streams).clone()
    }

    /// The settings of an HTTPS connection's next handshake.
    pub(crate) fn http(&self) -> Arc<ServerConfig> {
        read(&self.http).clone()
    }

    /// Where the self-signed certificate was written, if it was made.
    pub(crate) fn self_signed_path(&self) -> Option<&Path> {
        self.self_signed.as_deref()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.2 and 1.3 only (all rustls speaks), with the client CA if given.
fn server_configs(
    files: &TlsFiles,
    (chain, key): Credentials,
) -> anyhow::Result<(Arc<ServerConfig>, Arc<ServerConfig>)> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("cannot set up TLS 1.2 and 1.3")?;
    let builder = match &files.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certificates(path, "--tls-client-ca")? {
                roots.add(cert).with_context(|| {
                    format!(
                        "--tls-client-ca {}: a certificate is not a usable CA",
                        path.display()
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .with_context(|| format!("--tls-client-ca {}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut streams = builder.with_single_cert(chain, key).context(
        "--tls-key does not match the certificate of --tls-cert, or is not a key rustls can use",
    )?;
    // After a TLS 1.3 handshake, its keys are handed over to protect the
    // records without rustls's connection (`records.rs`): an idle client
    // costs about 3 KB less.
    streams.enable_secret_extraction = true;
    let mut http = streams.clone();
    http.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(streams), Arc::new(http)))
}

fn read_credentials(files: &TlsFiles) -> anyhow::Result<Credentials> {
    let (Some(cert), Some(key)) = (&files.cert, &files.key) else {
        anyhow::bail!("TLS needs --tls-cert FILE and --tls-key FILE, or --tls-self-signed");
    };
    let chain = read_certificates(cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
        anyhow::anyhow!(
            "--tls-key {}: no private key read ({error}); expected a PEM file with a PKCS#8, PKCS#1 or SEC1 key",
            key.display()
        )
    })?;
    Ok((chain, key))
}

/// Every certificate in a PEM file; at least one.
fn read_certificates(path: &Path, flag: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| anyhow::anyhow!("{flag} {}: {error}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{flag} {}: no certificate in it; expected PEM (-----BEGIN CERTIFICATE-----)",
        path.display()
    );
    Ok(certs)
}

/// Makes a certificate for localhost, and writes it where clients can be
/// told to trust it.
fn self_signed() -> anyhow::Result<(Credentials, std::path::PathBuf)> {
    let names: Vec<String> = SELF_SIGNED_NAMES.iter().map(|n| n.to_string()).collect();
    let made = SelfSigned::generate(&names)?;
    let path = std::env::temp_dir().join(format!(
        "switchboard-self-signed-{}.pem",
        std::process::id()
    ));
    std::fs::write(&path, &made.cert_pem).with_context(|| {
        format!(
            "cannot write the self-signed certificate to {}",
            path.display()
        )
    })?;
    let key = PrivateKeyDer::try_from(made.key_der)
        .map_err(|error| anyhow::anyhow!("the self-signed key: {error}"))?;
    Ok(((vec![made.cert_der], key), path))
}

/// A self-signed certificate and its key, for trying TLS out (`switchboard
/// cert`, `serve --tls-self-signed`): clients trust it by its file.
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl SelfSigned {
    /// A certificate valid for `hosts` (names or IP addresses), the first
    /// of which is also its common name.
    pub fn generate(hosts: &[String]) -> anyhow::Result<SelfSigned> {
        let mut params = rcgen::CertificateParams::new(hosts.to_vec())
            .context("a host is not a valid DNS name or IP address")?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            hosts.first().map_or("switchboard", String::as_str),
        );
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "switchboard (self-signed)");
        let key = rcgen::KeyPair::generate().context("cannot make a key")?;
        let cert = params
            .self_signed(&key)
            .context("cannot make a self-signed certificate")?;
        Ok(SelfSigned {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        })
    }
}

/// Why a TLS client never got to speak.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// Nothing or not enough came in time: often plaintext on a TLS port
    /// that waits for an answer.
    #[error("no TLS handshake within {}", crate::units::format_duration(*.0))]
    TimedOut(Duration),
    /// The client spoke something else, or refused our certificate.
    #[error("TLS handshake failed: {0}")]
    Failed(io::Error),
}

/// Most a failed handshake's client may still send, and how long it is
/// waited for, before its connection is dropped.
const LINGER_BYTES: usize = 64 * 1024;
pub(super) const LINGER_TIME: Duration = Duration::from_millis(500);

/// Closes a connection whose handshake failed so that the client reads
/// the alert the handshake wrote (a plaintext client is told it reached
/// TLS: `switchboard send` says so): our side is shut, and what the client
/// still sends is read and dropped (a bounded amount, for a bounded time).
/// Dropping a socket with unread input would reset it, and a reset can
/// overtake the alert.
pub(super) async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER_TIME, async {
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(read) => drained += read,
            }
        }
    })
    .await;
}

/// The common name of a client certificate's subject (DER), if it has one.
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_owned())
}

/// How a client checks the server's certificate: against the system's
/// trusted roots, a CA file (`--ca`), or not at all (`--insecure`).
#[derive(Debug, Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl ClientTls {
    /// Trusts the system's root certificates (`/etc/ssl/certs`).
    pub fn system_roots() -> anyhow::Result<Self> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        anyhow::ensure!(
            added > 0,
            "no trusted root certificates found on this system ({}); give the server's CA with --ca FILE",
            found
                .errors
                .first()
                .map_or_else(|| "none installed".to_owned(), |e| e.to_string())
        );
        Self::trusting(roots)
    }

    /// Trusts the CA certificates (or the self-signed certificate) in a
    /// PEM file.
    pub fn with_ca(path: &Path) -> anyhow::Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in read_certificates(path, "--ca")? {
            roots
                .add(cert)
                .with_context(|| format!("--ca {}: a certificate is not usable", path.display()))?;
        }
        Self::trusting(roots)
    }

    /// The rustls settings, for a client of another protocol over TLS
    /// (`switchboard status` asking an HTTPS admin API).
    pub fn rustls_config(&self) -> rustls::ClientConfig {
        (*self.config).clone()
    }

    /// Trusts any certificate at all: the connection is encrypted, but
    /// anyone in the middle can read and change it. For trying things out.
    pub fn insecure() -> anyhow::Result<Self> {
        let provider = provider();
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("cannot set up TLS 1.2 and 1.3")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    fn trusting(roots: RootCertStore) -> anyhow::Result<Self> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("cannot set up TLS 1.2 and 1.3")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// Presents the certificate chain and key in these PEM files to
    /// servers that ask for one (`--tls-client-ca` on the server).
    pub fn with_client_certificate(mut self, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let chain = read_certificates(cert, "--cert")?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|error| {
            anyhow::anyhow!("--key {}: no private key read ({error})", key.display())
        })?;
        let mut config = (*self.config).clone();
        let signing = provider()
            .key_provider
            .load_private_key(key)
            .context("--key: not a key rustls can use")?;
        config.client_auth_cert_resolver = Arc::new(SingleCert(Arc::new(
            rustls::sign::CertifiedKey::new(chain, signing),
        )));
        self.config = Arc::new(config);
        Ok(self)
    }

    /// Connects over TLS to `addr` (`HOST:PORT`), checking the
    /// certificate against `HOST`.
    pub async fn connect(
        &self,
        addr: &str,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let host = host_of(addr);
        let server_name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).with_context(|| {
                format!("{host:?} is not a host name or IP address to check a certificate against")
            })?;
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(server_name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {addr} failed"))
    }
}

/// `HOST` of `HOST:PORT` or `[IPv6]:PORT`.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// `--insecure`: accepts any certificate, still checking the handshake's
/// signatures so the connection is at least encrypted to whoever answers.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One client certificate, for every server that asks.
#[derive(Debug)]
struct SingleCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for SingleCert {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
