//! The control plane as one unit: the API server, the engine's periodic tick (lease reclaim, cron,
//! waiting reasons), the serverless autoscaler and the alert loop, all stopped by one shutdown
//! signal.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Error;
use crate::api::{AppState, PlanningInputs, router, serve};
use crate::engine::Engine;
use crate::launcher::{Launcher, ScalePolicy, autoscale};

#[derive(Debug)]
pub struct ControlPlaneOptions {
    pub listener: TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub planning: PlanningInputs,
    /// How often the engine ticks.
    pub tick: Duration,
}

/// Runs until `shutdown` turns true.
pub async fn run_control_plane<L: Launcher>(
    engine: Engine,
    options: ControlPlaneOptions,
    serverless: Option<(Arc<L>, ScalePolicy)>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let addr = options
        .listener
        .local_addr()
        .map_err(|cause| Error::Io { what: "listener address".into(), cause })?;
    let ticker = {
        let engine = engine.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = engine.tick().await {
                    tracing::warn!(error = %e, "Engine tick failed; retrying.");
                }
                tokio::select! {
                    _ = tokio::time::sleep(options.tick) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    };
    // Alert webhooks (`[alerts]`); a webhook whose URL cannot be read stops the start, so a
    // control plane never runs believing it alerts when it cannot.
    let alerts = crate::observe::alerts::Alerter::from_settings(&engine.config().settings.alerts)?
        .map(|alerter| tokio::spawn(alerter.run(engine.views(), shutdown.clone())));
    let scaler = serverless.map(|(launcher, policy)| {
        let engine = engine.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move { autoscale(engine, launcher.as_ref(), policy, stop).await })
    });
    let state = AppState { engine, planning: Arc::new(options.planning) };
    let mut stop = shutdown.clone();
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tracing::info!(%addr, tls = options.tls.is_some(), "Control plane listening.");
    let served = serve(options.listener, router(state), options.tls, signal).await;
    ticker.abort();
    if let Some(a) = alerts {
        a.abort();
    }
    if let Some(s) = scaler {
        s.abort();
    }
    served.map_err(|cause| Error::Io { what: format!("serving on {addr}"), cause })
}
