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
use switchyard_gateway::audit::AuditSink;
use switchyard_gateway::dial::{Dialer, DialerConfig};
use switchyard_gateway::identity::Identities;
use switchyard_gateway::policy::{Enforcer, Mode};
use switchyard_gateway::proxy::{ProxyConfig, serve};
use tokio::sync::watch;

use super::control::{load_inputs, shutdown_signal};

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
    stop: watch::Sender<bool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts the gateway for `egress_ip` on `listen`, with the identities named (from the settings).
pub(crate) async fn start(
    policy: EgressPolicy,
    settings: &Settings,
    identities: &[String],
    egress_ip: IpAddr,
    listen: SocketAddr,
    mode: Mode,
    credentials: Option<String>,
) -> anyhow::Result<Running> {
    let identities: Arc<Identities> = Identities::load_all(&settings.identities, identities)
        .with_context(|| format!("loading the client identities of the gateway for {egress_ip}"))?;
    identities.warn_expiring(std::time::SystemTime::now());
    let _watch = identities.watch(std::time::Duration::from_secs(10));
    let (audit, mut events) = AuditSink::channel();
    // The sink logs each decision as it is made; forwarding to the control plane comes with the
    // audit API.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let dialer =
        Dialer::new(Enforcer::new(policy, egress_ip, mode), identities, audit, DialerConfig::default());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("the gateway cannot listen on {listen}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stop_rx) = watch::channel(false);
    let config = ProxyConfig { credentials, ..ProxyConfig::default() };
    tokio::spawn(serve(listener, dialer.clone(), config, stop_rx));
    tracing::info!(%egress_ip, proxy = %url, mode = ?mode, "Gateway serving.");
    Ok(Running { url, stop })
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
    )
    .await?;
    eprintln!("switchyard gateway on {} (egress IP {}, {:?})", gateway.url, args.egress_ip, mode);
    let mut signal = shutdown_signal();
    let _ = signal.wait_for(|s| *s).await;
    Ok(ExitCode::SUCCESS)
}
