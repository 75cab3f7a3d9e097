//! API tokens: random secrets handed to people and nodes, stored only as SHA-256 hashes, each with
//! a role. Roles nest: admin ⊃ operator ⊃ viewer; `node` is separate (it can lease and report,
//! nothing else).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::Engine;
use crate::Error;
use crate::api::types::Role;
use crate::store::now_ms;

/// Hex SHA-256 of a token: what the store keeps.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("sy_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Hashes of tokens found in the store, with their role, for [`KNOWN_FOR`]. Every API call presents
/// a token; 100 nodes long-polling made the token lookup a store round trip per call (and on
/// SQLite a turn of its one connection). Tokens are never changed or removed once stored, so a
/// cached answer cannot be wrong; the expiry bounds how long one would outlive a future
/// revocation. Unknown tokens are not cached (a stream of made-up tokens cannot grow it).
#[derive(Debug, Clone, Default)]
pub(crate) struct KnownTokens(Arc<Mutex<HashMap<String, (Role, Instant)>>>);

/// How long an authenticated token is trusted without asking the store again.
const KNOWN_FOR: Duration = Duration::from_secs(60);

impl KnownTokens {
    fn get(&self, hash: &str) -> Option<Role> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known.get(hash).filter(|(_, at)| at.elapsed() < KNOWN_FOR).map(|(role, _)| *role)
    }

    fn insert(&self, hash: String, role: Role) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= 10_000 {
            known.retain(|_, (_, at)| at.elapsed() < KNOWN_FOR);
        }
        known.insert(hash, (role, Instant::now()));
    }
}

impl Engine {
    /// The role of a presented token, if it is known.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Role>, Error> {
        let hash = hash_token(token);
        if let Some(role) = self.known_tokens.get(&hash) {
            return Ok(Some(role));
        }
        let role: Option<String> = sqlx::query_scalar("SELECT role FROM tokens WHERE hash = $1")
            .bind(&hash)
            .fetch_optional(&self.store.read)
            .await
            .map_err(Error::store)?;
        let role = role.as_deref().and_then(Role::parse);
        if let Some(role) = role {
            self.known_tokens.insert(hash, role);
        }
        Ok(role)
    }

    /// Creates a token; only its hash is stored. The caller shows the token once.
    pub async fn create_token(&self, role: Role, name: &str) -> Result<String, Error> {
        let token = new_token();
        self.store_token(&token, role, name).await?;
        Ok(token)
    }

    async fn store_token(&self, token: &str, role: Role, name: &str) -> Result<(), Error> {
        sqlx::query("INSERT INTO tokens (hash, role, name, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (hash) DO NOTHING")
            .bind(hash_token(token))
            .bind(role.as_str())
            .bind(name)
            .bind(now_ms())
            .execute(&self.store.pool)
            .await
            .map_err(Error::store)?;
        Ok(())
    }

    /// Makes sure the admin token in `path` exists and is known: creates the file (mode 0600) on
    /// first start, and registers an existing file's token with this store.
    pub async fn ensure_admin_token(&self, path: &Path) -> Result<(), Error> {
        let token = match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let token = new_token();
                write_secret_file(path, &token)?;
                tracing::info!(path = %path.display(), "Created the admin token file.");
                token
            }
        };
        self.store_token(&token, Role::Admin, "admin (token file)").await
    }
}

fn write_secret_file(path: &Path, contents: &str) -> Result<(), Error> {
    let io = |cause| Error::Io { what: format!("cannot write the token file {}", path.display()), cause };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_except_node() {
        assert!(Role::Admin.permits(Role::Node));
        assert!(Role::Operator.permits(Role::Viewer));
        assert!(!Role::Viewer.permits(Role::Operator));
        assert!(!Role::Node.permits(Role::Viewer));
        assert!(!Role::Operator.permits(Role::Node));
        assert_eq!(hash_token("x").len(), 64);
    }
}
