//! The node's gateway: the egress policy enforced for this node's static egress IP, served as a
//! proxy on loopback for `run` tasks (and standalone as `switchyard gateway`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use switchyard_config::egress::EgressPolicy;
use switchyard_config::settings::Settings;
use switchyard_gateway::audit::{AuditEvent, AuditSink, Verdict};
use switchyard_gateway::dial::{Dialer, DialerConfig};
use switchyard_gateway::identity::Identities;
use switchyard_gateway::policy::{Enforcer, Mode};
use switchyard_gateway::proxy::{ProxyConfig, RefusalLog, serve};
use switchyard_scheduler::client::Client;
use switchyard_scheduler::engine::{AuditRecord, PolicyVersion};
use tokio::sync::watch;

use super::inputs::load_inputs;
use super::shutdown::shutdown_signal;

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The static egress IP connections leave from (an address of this machine).
    #[arg(long, value_name = "IP")]
    egress_ip: IpAddr,
    /// Where the proxy listens.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3128")]
    listen: SocketAddr,
    /// Log would-be denials instead of refusing them.
    #[arg(long)]
    dry_run: bool,
    /// `user:password` that clients must send as proxy credentials.
    #[arg(long, env = "SWITCHYARD_PROXY_CREDENTIALS", hide_env_values = true)]
    credentials: Option<String>,
    /// Settings file (identities). Default: ./switchyard.toml if it exists.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Egress policy. Default: ./egress.yaml.
    #[arg(long, value_name = "FILE")]
    egress: Option<PathBuf>,
}

/// A running gateway proxy.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) url: String,
    /// Connections the gateway refused, by the attempt that asked.
    pub(crate) refusals: RefusalLog,
    /// The client identities it holds (their expiry goes to the control plane with heartbeats).
    pub(crate) identities: Arc<Identities>,
    /// The dialer behind the proxy, for connectors running in the node's process.
    pub(crate) dialer: Dialer,
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the gateway for `egress_ip` on `listen`, with the identities named (from the settings).
/// With a control plane, the latest policy version applied there replaces `policy` (and is
/// followed as new versions are applied), and audit records are sent to it in batches.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start(
    policy: EgressPolicy,
    settings: &Settings,
    identities: &[String],
    egress_ip: IpAddr,
    listen: SocketAddr,
    mode: Mode,
    credentials: Option<String>,
    control: Option<Client>,
) -> anyhow::Result<Running> {
    start_bound(policy, settings, identities, egress_ip, None, listen, mode, credentials, control).await
}

/// [`start`], with connections bound to `source_ip` instead of the egress IP when the egress IP
/// is a NAT's address in front of this machine (see `DialerConfig::source_ip`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start_bound(
    policy: EgressPolicy,
    settings: &Settings,
    identities: &[String],
    egress_ip: IpAddr,
    source_ip: Option<IpAddr>,
    listen: SocketAddr,
    mode: Mode,
    credentials: Option<String>,
    control: Option<Client>,
) -> anyhow::Result<Running> {
    let identities: Arc<Identities> = Identities::load_all(&settings.identities, identities)
        .with_context(|| format!("loading the client identities of the gateway for {egress_ip}"))?;
    identities.warn_expiring(std::time::SystemTime::now());
    let _watch = identities.watch(std::time::Duration::from_secs(10));
    let (audit, events) = AuditSink::channel();
    let (mut policy, mut mode, mut version) = (policy, mode, 0);
    if let Some(client) = &control {
        if let Some(applied) = client.policy().await.unwrap_or(None) {
            if let Some((p, m)) = parse_version(&applied, settings) {
                (policy, mode, version) = (p, m, applied.version);
                tracing::info!(version, "Using the egress policy version applied in the control plane.");
            }
        }
    }
    let dialer = Dialer::new(
        Enforcer::new(policy, egress_ip, mode),
        identities.clone(),
        audit,
        DialerConfig { source_ip, ..DialerConfig::default() },
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("the gateway cannot listen on {listen}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stop_rx) = watch::channel(false);
    let refusals = RefusalLog::default();
    let config = ProxyConfig { credentials, refusals: refusals.clone(), ..ProxyConfig::default() };
    tokio::spawn(serve(listener, dialer.clone(), config, stop_rx.clone()));
    let node_dialer = dialer.clone();
    tokio::spawn(forward_audit(events, control.clone(), stop_rx.clone()));
    if let Some(client) = control {
        tokio::spawn(follow_policy(client, dialer, settings.clone(), egress_ip, version, stop_rx));
    }
    tracing::info!(%egress_ip, proxy = %url, mode = ?mode, "Gateway serving.");
    Ok(Running { url, refusals, identities, dialer: node_dialer, stop })
}

fn parse_version(applied: &PolicyVersion, settings: &Settings) -> Option<(EgressPolicy, Mode)> {
    let (loaded, diagnostics) = switchyard_config::parse_policy(
        std::path::Path::new("egress.yaml"),
        applied.yaml.as_bytes(),
        Some(settings),
    );
    if !diagnostics.is_empty() {
        tracing::warn!(
            version = applied.version,
            errors = diagnostics.len(),
            "The applied egress policy does not validate here; keeping the current one."
        );
        return None;
    }
    let mode = if applied.mode == "dry_run" { Mode::DryRun } else { Mode::Enforce };
    Some((loaded.policy, mode))
}

/// Polls for newer policy versions and swaps them in.
async fn follow_policy(
    client: Client,
    dialer: Dialer,
    settings: Settings,
    egress_ip: IpAddr,
    mut version: i64,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
        let Ok(Some(applied)) = client.policy().await else { continue };
        if applied.version <= version {
            continue;
        }
        if let Some((policy, mode)) = parse_version(&applied, &settings) {
            dialer.replace_policy(Enforcer::new(policy, egress_ip, mode));
            version = applied.version;
            tracing::info!(version, mode = ?mode, "Egress policy updated.");
        }
    }
}

/// Sends audit records in batches: every denial as it is, allowed connections counted per
/// destination, rule and minute so a busy node cannot flood the store.
async fn forward_audit(
    mut events: tokio::sync::mpsc::UnboundedReceiver<AuditEvent>,
    control: Option<Client>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            first = events.recv() => match first {
                Some(e) => batch.push(e),
                None => return,
            },
            _ = stop.changed() => return,
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        while let Ok(more) = events.try_recv() {
            batch.push(more);
        }
        let Some(client) = &control else { continue };
        let records = aggregate(batch);
        if let Err(e) = client.post_audit(records).await {
            tracing::warn!(error = %e, "Could not send egress audit records.");
        }
    }
}

fn aggregate(events: Vec<AuditEvent>) -> Vec<AuditRecord> {
    let mut allowed: std::collections::BTreeMap<(String, String, i64), AuditRecord> = Default::default();
    let mut records = Vec::new();
    for e in events {
        let base = AuditRecord {
            at: e.at,
            egress_ip: e.egress_ip.to_string(),
            task: e.task.clone(),
            destination: e.destination.clone(),
            verdict: String::new(),
            code: None,
            rule: None,
            reason: None,
            count: 1,
            bytes: 0,
            duration_ms: 0,
        };
        let minute = e.at - e.at.rem_euclid(60_000);
        match e.verdict {
            Verdict::Closed { rule, bytes, duration_ms } => {
                // Bytes and time go to the minute the connection ended in (count stays with the
                // minute it opened in).
                let rule = rule.unwrap_or_default();
                let entry = allowed.entry((e.destination, rule.clone(), minute)).or_insert(AuditRecord {
                    at: minute,
                    verdict: "allowed".into(),
                    rule: Some(rule),
                    task: None,
                    count: 0,
                    ..base
                });
                entry.bytes += bytes as i64;
                entry.duration_ms += duration_ms as i64;
            }
            Verdict::Allowed { rule } => {
                allowed.entry((e.destination, rule.clone(), minute)).and_modify(|r| r.count += 1).or_insert(
                    AuditRecord {
                        at: minute,
                        verdict: "allowed".into(),
                        rule: Some(rule),
                        task: None,
                        ..base
                    },
                );
            }
            Verdict::Denied { code, reason } => records.push(AuditRecord {
                verdict: "denied".into(),
                code: Some(code.into()),
                reason: Some(reason),
                ..base
            }),
            Verdict::WouldDeny { code, reason } => records.push(AuditRecord {
                verdict: "would_deny".into(),
                code: Some(code.into()),
                reason: Some(reason),
                ..base
            }),
        }
    }
    records.extend(allowed.into_values());
    records
}

pub(crate) async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    if std::net::TcpListener::bind((args.egress_ip, 0)).is_err() {
        anyhow::bail!(
            "egress IP {} is not an address of this machine; connections must leave from it",
            args.egress_ip
        );
    }
    let inputs = load_inputs(args.settings, args.egress, vec![])?;
    let mode = if args.dry_run { Mode::DryRun } else { Mode::Enforce };
    let names: Vec<String> = inputs.settings.settings.identities.keys().cloned().collect();
    let gateway = start(
        inputs.policy.policy.clone(),
        &inputs.settings.settings,
        &names,
        args.egress_ip,
        args.listen,
        mode,
        args.credentials,
        None,
    )
    .await?;
    eprintln!("switchyard gateway on {} (egress IP {}, {:?})", gateway.url, args.egress_ip, mode);
    let mut signal = shutdown_signal();
    let _ = signal.wait_for(|s| *s).await;
    Ok(ExitCode::SUCCESS)
}
