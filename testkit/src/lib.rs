//! Test fixtures several packages' tests share (a test module of one package cannot be imported by
//! another's): a throwaway CA made with rcgen, and a real nginx set up like a partner's API
//! gateway — TLS that requires a client certificate from that CA (`ssl_verify_client on`) and
//! serves only source 127.0.0.2 (`allow`/`deny`). nginx is installed by `scripts/test`
//! (Debian's nginx-light).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchyard_config::settings::IdentityFiles;

/// A CA this crate signs with.
pub type Ca = rcgen::Issuer<'static, rcgen::KeyPair>;

/// `prefix` followed by 32 random hex digits: a database, topic, bucket prefix or table name no
/// other test (in this process or another one running at the same time) uses. Lower-case hex
/// keeps it a valid SQL identifier and Kafka topic name after a prefix like `sy_rt_`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// A free port of 127.0.0.1 (for a site whose pages must name it before nginx starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A throwaway CA in a temporary directory, with `ca.crt` beside the certificates it issues.
#[derive(Debug)]
pub struct Pki {
    pub dir: tempfile::TempDir,
    ca: Ca,
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca, pem) = new_ca("Switchyard test CA");
        std::fs::write(dir.path().join("ca.crt"), pem).unwrap();
        Pki { dir, ca }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes NAME.crt / NAME.key signed by `issuer` (this CA by default).
    pub fn leaf(&self, name: &str, sans: &[&str], issuer: Option<&Ca>) -> IdentityFiles {
        self.issue(name, sans, issuer, false)
    }

    /// Like [`Pki::leaf`], signed by this CA but valid only during 2020.
    pub fn expired_leaf(&self, name: &str, sans: &[&str]) -> IdentityFiles {
        self.issue(name, sans, None, true)
    }

    fn issue(&self, name: &str, sans: &[&str], issuer: Option<&Ca>, expired: bool) -> IdentityFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, issuer.unwrap_or(&self.ca)).unwrap();
        let (crt, pem_key) = (self.path(&format!("{name}.crt")), self.path(&format!("{name}.key")));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&pem_key, key.serialize_pem()).unwrap();
        IdentityFiles { cert: crt, key: pem_key, ca: Some(self.path("ca.crt")) }
    }
}

/// A CA of its own (for certificates the test CA did not sign) and its PEM.
pub fn new_ca(cn: &str) -> (Ca, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let pem = params.self_signed(&key).unwrap().pem();
    (rcgen::Issuer::new(params, key), pem)
}

/// nginx on 127.0.0.1:PORT serving `www` under its directory (`pki.path("nginx/www")`), stopped
/// when dropped.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts nginx on `port` with `http` added to the `http` block and `locations` to the
    /// server; the document root is `pki.path("nginx/www")`. Each access is logged as
    /// `STATUS CONNECTION URI`.
    pub fn start(pki: &Pki, port: u16, http: &str, locations: &str) -> Nginx {
        let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: run scripts/test, which installs it (Debian's nginx-light)");
        pki.leaf("server", &["localhost", "127.0.0.1"], None);
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
                // One process: the guard's SIGKILL then stops all of nginx. With a master, its
                // workers outlived every test run (seen: 16 orphaned workers after one CI run).
                "daemon off; master_process off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
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
    pub fn accesses(&self) -> Vec<(u16, u64, String)> {
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
