//! The TLS flags of the client commands (`connect`, `send`, `bench`).

use std::path::PathBuf;

use clap::Args;
use switchboard::ClientTls;

/// How to reach a TLS listener.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Speak TLS (to a tls://, json+tls:// or raw+tls:// listener), checking the server's certificate against the system's trusted roots.
    #[arg(long)]
    pub tls: bool,

    /// Trust the CA certificate(s), or the self-signed certificate, in FILE (PEM) instead of the system's roots. Implies --tls.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Do not check the server's certificate at all: encrypted, but to whoever answers, so anyone in the middle can read and change it. For trying things out only. Implies --tls.
    #[arg(long)]
    pub insecure: bool,

    /// Present this client certificate (PEM) to a server that asks for one (--tls-client-ca). Needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    /// The client TLS settings, or `None` for plain TCP.
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTls>> {
        if !(self.tls || self.ca.is_some() || self.insecure || self.cert.is_some()) {
            return Ok(None);
        }
        anyhow::ensure!(
            !(self.insecure && self.ca.is_some()),
            "--insecure and --ca both given: --ca checks the certificate, --insecure does not; pick one"
        );
        let tls = if self.insecure {
            eprintln!("switchboard: WARNING: --insecure: the server's certificate is not checked; anyone between you and it can read and change what you send");
            ClientTls::insecure()?
        } else if let Some(ca) = &self.ca {
            ClientTls::with_ca(ca)?
        } else {
            ClientTls::system_roots()?
        };
        Ok(Some(match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => tls.with_client_certificate(cert, key)?,
            _ => tls,
        }))
    }
}
