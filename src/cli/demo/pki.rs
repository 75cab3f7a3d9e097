//! A throwaway certificate authority for the demo: the partner API's server certificate and the
//! `partner-demo` client identity the gateway presents. Made fresh on every run, so nothing of it
//! is worth protecting beyond the usual file permissions, and no real CA is ever involved.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The client identity's name, as the settings, the egress rule and the manifest know it.
pub(crate) const IDENTITY: &str = "partner-demo";
/// The client certificate expires this many days after the demo starts: inside the 30 days in
/// which the health check warns, so the dashboard shows what an expiring identity looks like.
pub(crate) const IDENTITY_DAYS: u64 = 21;

/// What the demo's CA made, in memory for the partner API and on disk for the gateway.
#[derive(Debug)]
pub(crate) struct Pki {
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) server_cert: CertificateDer<'static>,
    pub(crate) server_key: PrivatePkcs8KeyDer<'static>,
    /// The client identity's files: certificate, key (0600) and the CA that signed both sides.
    pub(crate) client: IdentityPaths,
}

#[derive(Debug, Clone)]
pub(crate) struct IdentityPaths {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) ca: PathBuf,
}

impl Pki {
    pub(crate) fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.server_key.clone_key())
    }
}

/// Makes the CA, the server certificate (for 127.0.0.1 and localhost) and the client identity,
/// writing them under `dir` (created).
pub(crate) fn create(dir: &Path) -> anyhow::Result<Pki> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let fail = |what: &str| format!("making the demo's {what} with rcgen");

    let ca_key = KeyPair::generate().with_context(|| fail("CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).with_context(|| fail("CA"))?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Switchyard demo CA (throwaway)");
    let ca_cert = ca_params.self_signed(&ca_key).with_context(|| fail("CA"))?;
    let ca_path = dir.join("ca.crt");
    write(&ca_path, ca_cert.pem().as_bytes(), false)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |name: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose, days: Option<u64>| {
        let key = KeyPair::generate().with_context(|| fail("key"))?;
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .with_context(|| fail(name))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        if let Some(days) = days {
            let (y, m, d) = date_in(days);
            params.not_after = rcgen::date_time_ymd(y, m, d);
        }
        let cert = params.signed_by(&key, &issuer).with_context(|| fail(name))?;
        anyhow::Ok((cert, key))
    };
    let (server, server_key) = leaf(
        "partner-api",
        &["127.0.0.1", "localhost", "198.51.100.10"],
        ExtendedKeyUsagePurpose::ServerAuth,
        None,
    )?;
    write(&dir.join("partner-api.crt"), server.pem().as_bytes(), false)?;
    write(&dir.join("partner-api.key"), server_key.serialize_pem().as_bytes(), true)?;
    let (client, client_key) = leaf(IDENTITY, &[], ExtendedKeyUsagePurpose::ClientAuth, Some(IDENTITY_DAYS))?;
    let paths = IdentityPaths {
        cert: dir.join(format!("{IDENTITY}.crt")),
        key: dir.join(format!("{IDENTITY}.key")),
        ca: ca_path,
    };
    write(&paths.cert, client.pem().as_bytes(), false)?;
    write(&paths.key, client_key.serialize_pem().as_bytes(), true)?;

    Ok(Pki {
        ca: ca_cert.der().clone(),
        server_cert: server.der().clone(),
        server_key: PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        client: paths,
    })
}

/// The UTC calendar date `days` from today (days-from-civil inverted, proleptic Gregorian), so
/// the demo needs no date crate for one expiry.
fn date_in(days: u64) -> (i32, u8, u8) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    civil((now.as_secs() / 86_400 + days) as i64)
}

/// The date of a day counted from 1970-01-01.
fn civil(days_since_epoch: i64) -> (i32, u8, u8) {
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month as u8, day as u8)
}

/// Writes a file; keys are created 0600 from the start, never readable by others even briefly.
fn write(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true).mode(if secret { 0o600 } else { 0o644 });
    let mut file = options.open(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(20_818), (2026, 12, 31));
    }

    #[test]
    fn keys_are_private_and_the_identity_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let pki = create(dir.path()).unwrap();
        for key in [&pki.client.key, &dir.path().join("partner-api.key")] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        // The gateway's identity loader accepts the files (key matches certificate, CA parses).
        let files = switchyard_config::settings::IdentityFiles {
            cert: pki.client.cert.clone(),
            key: pki.client.key.clone(),
            ca: Some(pki.client.ca.clone()),
        };
        let mut all = std::collections::BTreeMap::new();
        all.insert(IDENTITY.to_owned(), files);
        switchyard_gateway::identity::Identities::load_all(&all, &[IDENTITY.to_owned()]).unwrap();
    }
}
