//! Logs for long-running commands: text or JSON lines on stderr, `RUST_LOG` to filter.
//!
//! With `--log-format json` each line is one object: `timestamp`, `level`, `target`, `fields`
//! (the message and the event's own fields) and `span`/`spans` (the enclosing spans' fields). A
//! node agent's or worker's lines about an attempt carry `span.job`, `span.run`, `span.task`,
//! `span.attempt`, `span.node` and `span.egress_ip` (see `agent::attempt_span`).

use clap::ValueEnum;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// `verbose` daemons log at info; short commands only warnings unless RUST_LOG says otherwise.
pub(crate) fn init(format: LogFormat, verbose: bool) {
    let default = if verbose { "info,sqlx=warn,hyper=warn" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = subscriber(format, filter, std::io::stderr).try_init();
}

/// The subscriber `init` installs, writing to `writer` (tests capture it).
pub(crate) fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().finish()),
    }
}
