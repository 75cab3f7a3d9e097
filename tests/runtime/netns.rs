//! The central promise where a packet could really go the wrong way: a partner behind a firewall
//! that admits only the pool's egress IP, a dedicated node holding that IP on a real interface in
//! its own network namespace, and serverless workers in a namespace with no route out at all
//! (`[serverless] netns`). The control plane runs in the root namespace on 127.0.0.1; nodes and
//! workers reach it through a relay listening inside their namespace on the same address.
//!
//! These need root with CAP_SYS_ADMIN, iproute2 and nftables. `scripts/test` installs both and sets
//! `SWITCHYARD_TEST_NETNS=required`, so there a missing capability fails them instead of skipping.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_config::FailureClass;
use switchyard_netns::{PARTNER_IP, Topology};
use switchyard_scheduler::engine::{RunState, TaskState};

use super::harness::{Proc, Setup, bin, wait_finished};

const POOL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const WRONG_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
const PARTNER_PORT: u16 = 9443;

/// A partner service inside the partner's namespace: accepts, writes one line, records who came.
struct Partner {
    peers: Arc<Mutex<Vec<IpAddr>>>,
}

impl Partner {
    fn start(topology: &Topology) -> Partner {
        let addr = SocketAddr::from((PARTNER_IP, PARTNER_PORT));
        let listener: TcpListener = topology.listen(&topology.partner().ns, addr).unwrap();
        let peers: Arc<Mutex<Vec<IpAddr>>> = Arc::default();
        let seen = peers.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                if let Ok(peer) = stream.peer_addr() {
                    seen.lock().unwrap().push(peer.ip());
                }
                let _ = stream.write_all(b"partner here\n");
            }
        });
        Partner { peers }
    }

    fn peers(&self) -> Vec<IpAddr> {
        self.peers.lock().unwrap().clone()
    }
}

/// Settings for pool `egress-a` = 203.0.113.10 whose only rule is the partner's port, with
/// workers started in the serverless namespace.
fn setup(topology: &Topology) -> Setup {
    let setup = Setup::new("sqlite://state.db", "15s");
    let settings = setup.path("switchyard.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    let pools_start = text.find("[[pools]]").unwrap();
    let serverless = topology.serverless().unwrap().ns.clone();
    let text = format!(
        "{}[[pools]]\nname = \"egress-a\"\negress_ips = [\"{POOL_IP}\"]\nslots = 4\n\n\
         [serverless]\nmax_workers = 2\nidle_timeout = \"3s\"\nnetns = \"{serverless}\"\n\n\
         [lake]\nroot = \"{}\"\n",
        &text[..pools_start],
        setup.path("lake").display()
    );
    std::fs::write(&settings, text).unwrap();
    std::fs::write(
        setup.path("egress.yaml"),
        format!(
            "destinations:\n  - {{ name: partner, host: {PARTNER_IP}, ports: [{PARTNER_PORT}], egress_ips: [{POOL_IP}] }}\n  \
             - {{ name: partner-db, host: {PARTNER_IP}, ports: [5432], egress_ips: [{POOL_IP}] }}\n"
        ),
    )
    .unwrap();
    setup
}

/// The partner's PostgreSQL at 198.51.100.10:5432: a relay inside the partner's namespace to the
/// server the tests use, with a fresh database holding `claims` (50 rows). Returns the database
/// and the manifest lines for its connection.
async fn partner_database(topology: &Topology) -> (super::harness::PgDb, String) {
    let db = super::harness::PgDb::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    sqlx::query(
        "CREATE TABLE claims AS SELECT g AS id, 'p' || (g % 3) AS provider FROM generate_series(1, 50) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let url = url::Url::parse(&db.url).unwrap();
    let server = SocketAddr::new(url.host_str().unwrap().parse().unwrap(), url.port().unwrap_or(5432));
    topology.forward(&topology.partner().ns, SocketAddr::from((PARTNER_IP, 5432)), server).unwrap();
    let password = url.password().map(|p| {
        let path = std::env::temp_dir().join(format!("switchyard-netns-{}.pw", std::process::id()));
        std::fs::write(&path, format!("{p}\n")).unwrap();
        format!("      password_file: {}\n", path.display())
    });
    let source = format!(
        "      kind: postgres\n      host: {PARTNER_IP}\n      port: 5432\n      database: {}\n      user: {}\n{}      query: SELECT id, provider FROM claims\n",
        &url.path()[1..],
        url.username(),
        password.unwrap_or_default()
    );
    (db, source)
}

/// `switchyard node` for pool egress-a with `ip`, started inside `ns`.
fn node_in(topology: &Topology, setup: &Setup, ns: &str, ip: Ipv4Addr) -> Command {
    let mut c = topology.command(ns, bin());
    c.args(["node", "--pool", "egress-a", "--egress-ip", &ip.to_string(), "--control-plane", &setup.url()])
        .arg("--settings")
        .arg(setup.path("switchyard.toml"))
        .arg("--egress")
        .arg(setup.path("egress.yaml"))
        .args(["--drain-timeout", "2s"])
        .current_dir(setup.dir.path())
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null());
    c
}

fn topology() -> Topology {
    Topology::builder().pool("egress-a", POOL_IP).stranger("wrong", WRONG_IP).serverless().build().unwrap()
}

/// A `run` task without destinations on a serverless worker opens its own socket to the partner
/// (ignoring the proxy variables): the worker's namespace has no route, the connect fails in the
/// kernel, and the attempt is reported as `access` with the hint to declare the destination. The
/// same program with the destination declared runs on the dedicated node, through its gateway,
/// from the pool's egress IP, and gets through. The partner's firewall saw no packet from any
/// other source.
#[tokio::test(flavor = "multi_thread")]
async fn only_the_pool_reaches_the_partner_and_serverless_finds_no_route() {
    switchyard_netns::require_netns!();
    let topology = topology();
    let partner = Partner::start(&topology);
    let setup = setup(&topology);
    let serverless = topology.serverless().unwrap().ns.clone();
    let pool = topology.pool("egress-a").unwrap().ns.clone();
    assert_eq!(topology.routes(&serverless).unwrap(), "", "the serverless namespace has no route at all");
    let _server = setup.serve();
    // The control plane at the same 127.0.0.1 address from inside the node's and workers' namespaces.
    topology.forward_loopback(&serverless, setup.port).unwrap();
    topology.forward_loopback(&pool, setup.port).unwrap();
    let _node = Proc { child: node_in(&topology, &setup, &pool, POOL_IP).spawn().unwrap() };

    let (_db, pg_source) = partner_database(&topology).await;
    let url = format!("https://{PARTNER_IP}:{PARTNER_PORT}/claims");
    let job = setup.write_job(
        "reach.yaml",
        &format!(
            "job: reach\ntasks:\n  \
             - name: direct\n    run:\n      command: [\"{bin}\", \"fetch\", \"--direct\", \"{url}\"]\n  \
             - name: declared\n    run:\n      command: [\"{bin}\", \"fetch\", \"{url}\"]\n      destinations: [\"{PARTNER_IP}:{PARTNER_PORT}\"]\n  \
             - name: ingest_db\n    source:\n{pg_source}    sink: {{ table: bronze.partner_claims }}\n",
            bin = bin()
        ),
    );
    let client = setup.client(&setup.url());
    let run = setup.submit(&client, &job).await;
    let view = wait_finished(&client, run, Duration::from_secs(90)).await;
    assert_eq!(view.state, RunState::Failed, "{view:#?}");
    let task = |name: &str| view.tasks.iter().find(|t| t.task == name).unwrap();

    let direct = task("direct");
    assert_eq!((direct.compute.as_str(), direct.state), ("serverless", TaskState::Failed), "{direct:#?}");
    let attempt = &direct.attempts[0];
    assert_eq!(attempt.error_class, Some(FailureClass::Access), "{attempt:#?}");
    let message = attempt.message.as_deref().unwrap_or_default();
    assert!(message.contains("Network is unreachable") && message.contains("run.destinations"), "{message}");
    eprintln!("serverless direct connect: {message}");

    let declared = task("declared");
    assert_eq!(
        (declared.compute.as_str(), declared.state),
        ("dedicated", TaskState::Succeeded),
        "{declared:#?}"
    );
    assert_eq!(declared.attempts[0].egress_ip.as_deref(), Some("203.0.113.10"));

    // The partner's PostgreSQL, through the node's gateway dialer from the pool's egress IP.
    let ingest = task("ingest_db");
    assert_eq!((ingest.compute.as_str(), ingest.state), ("dedicated", TaskState::Succeeded), "{ingest:#?}");
    let lake = switchyard_lake::Lake::new(setup.path("lake").to_str().unwrap()).unwrap();
    let rows: usize = lake
        .read(&"bronze.partner_claims".parse().unwrap(), None)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 50);

    // The partner's API saw one connection, from the pool's egress IP; its firewall admitted two
    // (the API and the database) and saw no packet from any other source.
    assert_eq!(partner.peers(), vec![IpAddr::V4(POOL_IP)]);
    let counters = topology.firewall().unwrap();
    let sources: BTreeSet<Ipv4Addr> = counters.sources.keys().copied().collect();
    assert_eq!(sources, BTreeSet::from([POOL_IP]), "{}", topology.firewall_text().unwrap());
    assert_eq!(counters.refused, 0, "{}", topology.firewall_text().unwrap());
    assert!(counters.accepted >= 2, "{}", topology.firewall_text().unwrap());
    eprintln!("partner firewall: {counters:?}");

    // The denial is in the control plane's egress audit, like the proxy's refusals.
    let audit = client.audit(true, 50).await.unwrap();
    assert!(
        audit.iter().any(|a| a.code.as_deref() == Some("serverless_no_route")
            && a.destination == format!("{PARTNER_IP}:{PARTNER_PORT}")
            && a.task.as_deref() == Some("reach/direct")),
        "{audit:#?}"
    );
    topology.close().unwrap();
}

/// A node started where its egress IP is not an address (the serverless namespace) refuses to
/// start; one whose IP is real but not the pool's (a stranger's namespace) is refused at
/// registration. The control plane cannot see a node's source address itself (nodes reach it
/// through relays here, through NATs and load balancers in production): the checks are the
/// node's bind and the pool's IP list. A stranger that connects to the partner anyway is turned
/// away by the partner's firewall.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_in_the_wrong_namespace_is_refused() {
    switchyard_netns::require_netns!();
    let topology = topology();
    let setup = setup(&topology);
    let serverless = topology.serverless().unwrap().ns.clone();
    let stranger = topology.stranger("wrong").unwrap().ns.clone();
    let _server = setup.serve();
    topology.forward_loopback(&serverless, setup.port).unwrap();
    topology.forward_loopback(&stranger, setup.port).unwrap();

    let out = node_in(&topology, &setup, &serverless, POOL_IP).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("is not an address of this machine"), "{stderr}");
    eprintln!("node in the serverless namespace: {}", stderr.lines().last().unwrap_or_default());

    let started = Instant::now();
    let out = node_in(&topology, &setup, &stranger, WRONG_IP).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("refused this node") && stderr.contains("203.0.113.10"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    eprintln!("node with the wrong egress IP: {}", stderr.lines().last().unwrap_or_default());

    let partner = SocketAddr::from((PARTNER_IP, PARTNER_PORT));
    let err = topology.connect_from(&stranger, partner, Duration::from_secs(3)).unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::HostUnreachable, "{err}");
    let counters = topology.firewall().unwrap();
    assert_eq!((counters.accepted, counters.refused), (0, 1), "{}", topology.firewall_text().unwrap());
    assert_eq!(counters.sources.keys().copied().collect::<Vec<_>>(), [WRONG_IP]);
    topology.close().unwrap();
}
