//! Logs for long-running commands: text or JSON lines on stderr, `RUST_LOG` to filter.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// `verbose` daemons log at info; short commands only warnings unless RUST_LOG says otherwise.
pub(crate) fn init(format: LogFormat, verbose: bool) {
    let default = if verbose { "info,sqlx=warn,hyper=warn" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
