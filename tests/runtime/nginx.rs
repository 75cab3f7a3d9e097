//! A real nginx for the HTTPS kill tests, set up like a partner's API gateway: TLS requiring a
//! client certificate (`ssl_verify_client on`) and allowing only source 127.0.0.2 (`allow`/`deny`).
//! Certificates come from a throwaway CA made with rcgen. nginx is installed by `scripts/test`.
//! Copied (trimmed) from `ingest/tests/nginx/mod.rs`: test modules of another package cannot be
//! imported.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchyard_config::settings::IdentityFiles;

type Issuer = rcgen::Issuer<'static, rcgen::KeyPair>;

/// A CA and the certificates it signs, in a temporary directory.
pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    ca: Issuer,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "Switchyard test CA");
        let pem = params.self_signed(&key).unwrap().pem();
        std::fs::write(dir.path().join("ca.crt"), pem).unwrap();
        Pki { dir, ca: rcgen::Issuer::new(params, key) }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes NAME.crt / NAME.key signed by this CA.
    pub(crate) fn leaf(&self, name: &str, sans: &[&str]) -> IdentityFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (crt, pem_key) = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem_key, key.serialize_pem()).unwrap();
        IdentityFiles { cert: crt, key: pem_key, ca: Some(self.path("ca.crt")) }
    }
}

/// nginx on 127.0.0.1:PORT serving `pki.path("nginx/www")`, stopped when dropped.
pub(crate) struct Nginx {
    child: Child,
    pub(crate) port: u16,
    pub(crate) dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx on a free port with `http` added to the `http` block and `locations` to the
    /// server. Each access is logged as `STATUS CONNECTION URI`.
    pub(crate) fn start(pki: &Pki, http: &str, locations: &str) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: run scripts/test, which installs it (Debian's nginx-light)");
        let port = crate::harness::free_port();
        pki.leaf("server", &["localhost", "127.0.0.1"]);
        let dir = pki.path("nginx");
        std::fs::create_dir_all(dir.join("www")).unwrap();
        let user = if is_root() { "user root;" } else { "" };
        let conf = format!(
            "{user}\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  log_format short '$status $connection $request_uri';\n  access_log {d}/access.log short;\n  \
             client_body_temp_path {d}/body;\n  default_type application/json;\n  {http}\n  \
             server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {s}/server.crt;\n    \
             ssl_certificate_key {s}/server.key;\n    ssl_client_certificate {s}/ca.crt;\n    ssl_verify_client on;\n    \
             root {d}/www;\n    allow 127.0.0.2;\n    deny all;\n    {locations}\n  }}\n}}\n",
            d = dir.display(),
            s = pki.dir.path().display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx)
            .args([
                "-p",
                dir.to_str().unwrap(),
                "-c",
                dir.join("nginx.conf").to_str().unwrap(),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned by the guard from here on, so it is reaped on every path.
        let nginx = Nginx { child, port, dir };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default()
        );
    }

    /// The access log: (status, connection number, URI) per request.
    pub(crate) fn accesses(&self) -> Vec<(u16, u64, String)> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ' ');
                Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.to_owned()))
            })
            .collect()
    }
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}
