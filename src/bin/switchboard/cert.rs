//! `switchboard cert`: a self-signed certificate and key, to try TLS
//! without a certificate authority.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use switchboard::SelfSigned;

#[derive(Debug, Args)]
pub struct CertArgs {
    /// A host name or IP address clients will connect to; repeatable. The first is the file name. [default: localhost, 127.0.0.1, ::1]
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,

    /// The directory to write HOST.pem (certificate) and HOST-key.pem (private key) in.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,

    /// Replace files that exist.
    #[arg(long)]
    force: bool,
}

pub fn run(args: CertArgs) -> anyhow::Result<ExitCode> {
    let hosts = if args.hosts.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
    } else {
        args.hosts
    };
    let made = SelfSigned::generate(&hosts)?;
    let stem = hosts[0].replace([':', '/'], "_");
    let cert = args.out.join(format!("{stem}.pem"));
    let key = args.out.join(format!("{stem}-key.pem"));
    write(&cert, &made.cert_pem, 0o644, args.force)?;
    write(&key, &made.key_pem, 0o600, args.force)?;
    let (cert, key) = (cert.display(), key.display());
    let host = &hosts[0];
    println!(
        "wrote a self-signed certificate for {} to {cert}
and its private key to {key} (keep it secret: readable by you alone).

serve with it:
  switchboard serve --listen tls://0.0.0.0:12443 --tls-cert {cert} --tls-key {key}

clients must be told to trust it, as it is signed by no authority:
  switchboard connect --ca {cert} {host}:12443
  openssl s_client -connect {host}:12443 -CAfile {cert}
  or, for every program on a Debian/Ubuntu machine:
  sudo cp {cert} /usr/local/share/ca-certificates/switchboard-{stem}.crt && sudo update-ca-certificates

For a server on the internet, use a certificate from a real authority
(e.g. Let's Encrypt with certbot; see docs/deploy.md).",
        hosts.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, contents: &str, mode: u32, force: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    // `--out DIR` may name a directory not made yet.
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot make the directory {}", dir.display()))?;
    }
    let mut file = options.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} exists; use --force to replace it", path.display())
        } else {
            format!("cannot write {}", path.display())
        }
    })?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
