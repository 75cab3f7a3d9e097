//! Client identities (settings `[identities.NAME]`): PEM certificate chain, private key and CA.
//! Loading checks that the key matches the certificate and reads the expiry; a watcher reloads
//! files that changed, swapping the configuration for new connections while live ones keep theirs.
//! Key material stays inside rustls and is never printed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use switchyard_config::settings::IdentityFiles;
use switchyard_config::tls::{certs, client_with_identity, install_provider, private_key, roots};

use crate::Error;
use crate::tls::read_pem;

/// A loaded identity, ready to present.
#[derive(Debug)]
pub struct Identity {
    pub name: String,
    pub config: Arc<rustls::ClientConfig>,
    /// Certificate expiry, seconds since the Unix epoch.
    pub not_after: i64,
    pub subject: String,
    stamp: Vec<Option<SystemTime>>,
}

impl Identity {
    /// Whole days until expiry (negative once expired).
    pub fn days_left(&self, now: SystemTime) -> i64 {
        let now = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        (self.not_after - now).div_euclid(86_400)
    }
}

fn stamps(files: &IdentityFiles) -> Vec<Option<SystemTime>> {
    [Some(&files.cert), Some(&files.key), files.ca.as_ref()]
        .into_iter()
        .map(|p| p.and_then(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok()))
        .collect()
}

/// Loads and checks one identity.
pub fn load(name: &str, files: &IdentityFiles) -> Result<Identity, Error> {
    install_provider();
    let bad = |problem: String| Error::Identity { name: name.to_owned(), problem };
    let stamp = stamps(files);
    let chain = certs(&read_pem(&files.cert)?, &files.cert.display().to_string()).map_err(bad)?;
    let key = private_key(&read_pem(&files.key)?, &files.key.display().to_string()).map_err(bad)?;
    warn_if_readable(name, &files.key);
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| bad(format!("unsupported private key: {e}")))?;
    rustls::sign::CertifiedKey::new(chain.clone(), signing).keys_match().map_err(|_| {
        bad(format!(
            "the private key {} does not match the certificate {}",
            files.key.display(),
            files.cert.display()
        ))
    })?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| bad(format!("cannot read the certificate: {e}")))?;
    let not_after = leaf.validity().not_after.timestamp();
    let subject = leaf.subject().to_string();
    let roots = roots(files.ca.as_deref()).map_err(bad)?;
    let config = client_with_identity(roots, chain, key).map_err(bad)?;
    Ok(Identity { name: name.to_owned(), config, not_after, subject, stamp })
}

#[cfg(unix)]
fn warn_if_readable(name: &str, key: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(key) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(identity = name, key = %key.display(), "Private key file is world-readable; chmod 600 it.");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable(_: &str, _: &Path) {}

/// All identities of a node, reloadable.
#[derive(Debug, Default)]
pub struct Identities {
    files: BTreeMap<String, IdentityFiles>,
    loaded: RwLock<HashMap<String, Arc<Identity>>>,
}

impl Identities {
    /// Loads every identity; a broken one is an error (a node must not start half-equipped).
    pub fn load_all(
        files: &BTreeMap<String, IdentityFiles>,
        names: &[String],
    ) -> Result<Arc<Identities>, Error> {
        let mut loaded = HashMap::new();
        for name in names {
            let f = files.get(name).ok_or_else(|| Error::Identity {
                name: name.clone(),
                problem: "not defined in the settings".into(),
            })?;
            loaded.insert(name.clone(), Arc::new(load(name, f)?));
        }
        let wanted =
            files.iter().filter(|(n, _)| names.contains(n)).map(|(n, f)| (n.clone(), f.clone())).collect();
        Ok(Arc::new(Identities { files: wanted, loaded: RwLock::new(loaded) }))
    }

    pub fn get(&self, name: &str) -> Option<Arc<Identity>> {
        self.loaded.read().ok()?.get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Identity>> {
        self.loaded.read().map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Reloads identities whose files changed. A reload that fails keeps the previous identity (and
    /// says why); returns the names reloaded.
    pub fn reload_changed(&self) -> Vec<String> {
        let mut reloaded = Vec::new();
        for (name, files) in &self.files {
            let current = self.get(name);
            if current.as_ref().is_some_and(|c| c.stamp == stamps(files)) {
                continue;
            }
            match load(name, files) {
                Ok(identity) => {
                    if let Ok(mut map) = self.loaded.write() {
                        map.insert(name.clone(), Arc::new(identity));
                    }
                    tracing::info!(identity = %name, "Reloaded a client identity after its files changed.");
                    reloaded.push(name.clone());
                }
                Err(e) => {
                    tracing::warn!(identity = %name, error = %e, "Identity files changed but do not load; keeping the previous ones.")
                }
            }
        }
        reloaded
    }

    /// Logs a warning for identities expiring within 30, 7 or 1 days (or expired).
    pub fn warn_expiring(&self, now: SystemTime) {
        for identity in self.all() {
            let days = identity.days_left(now);
            if days < 0 {
                tracing::error!(identity = %identity.name, "Client certificate has expired.");
            } else if days <= 30 {
                let tier = if days <= 1 {
                    1
                } else if days <= 7 {
                    7
                } else {
                    30
                };
                tracing::warn!(identity = %identity.name, days_left = days, within_days = tier, "Client certificate expires soon.");
            }
        }
    }

    /// Polls for changed files every `every` until the returned handle is dropped/aborted.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                this.reload_changed();
            }
        })
    }
}
