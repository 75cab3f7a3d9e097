//! The event log: the control plane's exporter into the lake's `_switchyard/event_log` Delta
//! table, and `switchyard events [--follow] [--json] [--since …]`, which prints it.
//!
//! `switchyard events` reads **the Delta table through the lake root in the settings**, not an API
//! route. The table is the contract (any Delta reader sees the same rows, in the same order, with
//! the same sequences), so the command shows exactly what an analyst's notebook or an alerting job
//! reading the table would; it works when no control plane is running (after an incident, or on a
//! laptop with read access to the lake), puts no load on the control plane or its store, and needs
//! no API token — access is whatever access to the lake the caller has. The price is the export
//! delay: an event shows up once the exporter has committed it, a couple of seconds later
//! ([`ExportPolicy::interval`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use switchyard_config::settings::Settings;
use switchyard_lake::{EventFilter, EventRecord, Lake};
use switchyard_scheduler::Error as SchedulerError;
use switchyard_scheduler::engine::Engine;
use switchyard_scheduler::observe::export::{
    EXPORT_APP_ID, EventSink, ExportPolicy, Exporter, LogEvent, export_loop,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::inputs::load_inputs;
use super::shutdown::shutdown_signal;

/// Writes exported events to the lake's event log table.
#[derive(Debug, Clone)]
pub(crate) struct LakeSink {
    lake: Lake,
}

impl LakeSink {
    pub(crate) fn new(lake: Lake) -> Self {
        LakeSink { lake }
    }

    fn error(&self, e: switchyard_lake::Error) -> SchedulerError {
        SchedulerError::EventExport { target: self.describe(), cause: e.to_string(), hint: e.hint() }
    }
}

impl EventSink for LakeSink {
    async fn position(&self) -> Result<i64, SchedulerError> {
        self.lake.event_log_position(EXPORT_APP_ID).await.map_err(|e| self.error(e))
    }

    async fn append(&self, events: &[LogEvent], upto: i64) -> Result<(), SchedulerError> {
        let records: Vec<EventRecord> = events
            .iter()
            .map(|e| EventRecord {
                id: e.id,
                sequence: e.sequence,
                origin: e.origin.clone(),
                timestamp_ms: e.at_ms,
                level: e.level.as_str().to_owned(),
                event_type: e.event_type.clone(),
                message: e.message.clone(),
                details: e.details.clone(),
            })
            .collect();
        self.lake.append_events(&records, EXPORT_APP_ID, upto).await.map_err(|e| self.error(e))?;
        Ok(())
    }

    fn describe(&self) -> String {
        self.lake.event_log_location().to_string()
    }
}

/// Starts the control plane's event log exporter; it stops (after a last export) when `shutdown`
/// turns true.
pub(crate) fn spawn_exporter(
    engine: &Engine,
    settings: &Settings,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let lake = Lake::from_settings(&settings.lake)
        .with_context(|| format!("opening the lake at {} for the event log", settings.lake.root))?;
    // The exporter's lease lasts as long as a task's: a replica that dies is replaced as an
    // exporter as soon as its nodes' work would be.
    let policy =
        ExportPolicy { lease_ttl: settings.control_plane.lease_ttl.as_std(), ..ExportPolicy::default() };
    Ok(tokio::spawn(export_loop(
        Exporter::new(engine.store().clone()),
        LakeSink::new(lake),
        policy,
        shutdown,
    )))
}

#[derive(Debug, Args)]
pub(crate) struct EventsArgs {
    /// Settings file whose [lake] root holds the event log. Default: ./switchyard.toml if it exists.
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
    /// Keep printing new events as they are exported, until Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// Print one JSON object per line (id, sequence, origin, timestamp, level, event_type,
    /// message, details).
    #[arg(long)]
    json: bool,
    /// Only events from this long ago (`30m`, `24h`, `7d`) or since this RFC 3339 time
    /// (`2025-01-31T08:00:00Z`).
    #[arg(long, value_name = "DURATION|TIME")]
    since: Option<String>,
    /// Only events after this sequence number (to resume where an earlier listing stopped).
    #[arg(long, value_name = "SEQUENCE")]
    after: Option<i64>,
    /// How many of the newest matching events to print first; 0 for all of them.
    #[arg(long, default_value_t = 50)]
    last: usize,
}

pub(crate) async fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let inputs = load_inputs(args.settings.clone(), None, vec![])?;
    let root = inputs.settings.settings.lake.root.clone();
    let lake = Lake::from_settings(&inputs.settings.settings.lake)
        .with_context(|| format!("opening the lake at {root}"))?;
    let since_ms = args.since.as_deref().map(parse_since).transpose()?;
    let filter =
        EventFilter { after_sequence: args.after, since_ms, last: (args.last > 0).then_some(args.last) };
    let location = lake.event_log_location();
    let mut out = std::io::stdout().lock();
    let events =
        lake.read_events(&filter).await.with_context(|| format!("reading the event log at {location}"))?;
    let mut last = args.after.unwrap_or(0);
    for e in &events {
        print_event(&mut out, e, args.json)?;
        last = last.max(e.sequence);
    }
    out.flush()?;
    if !args.follow {
        if events.is_empty() && !args.json {
            eprintln!(
                "no events in {location}{}; a running control plane (`switchyard serve`, `run`, `demo`) exports them there every few seconds",
                if args.since.is_some() || args.after.is_some() { " matching the filter" } else { "" }
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    let mut stop = shutdown_signal();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return Ok(ExitCode::SUCCESS),
        }
        let next = EventFilter { after_sequence: Some(last), since_ms, last: None };
        match lake.read_events(&next).await {
            Ok(events) => {
                failing = false;
                let mut out = std::io::stdout().lock();
                for e in &events {
                    print_event(&mut out, e, args.json)?;
                    last = last.max(e.sequence);
                }
                out.flush()?;
            }
            // A passing storage hiccup should not end a follow; say so once.
            Err(e) if !failing => {
                failing = true;
                eprintln!("warning: reading the event log at {location} failed, retrying: {e}");
            }
            Err(_) => {}
        }
    }
}

/// `30m` → now − 30 minutes; `2025-01-31T08:00:00Z` → that time.
fn parse_since(text: &str) -> anyhow::Result<i64> {
    if let Ok(d) = text.parse::<switchyard_config::value::Duration>() {
        let now = chrono::Utc::now().timestamp_millis();
        return Ok(now - d.as_std().as_millis() as i64);
    }
    match chrono::DateTime::parse_from_rfc3339(text) {
        Ok(t) => Ok(t.timestamp_millis()),
        Err(_) => bail!(
            "--since `{text}` is neither a duration nor a time; write a duration such as 30m, 24h or 7d, or an RFC 3339 time such as 2025-01-31T08:00:00Z"
        ),
    }
}

fn timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

fn print_event(out: &mut impl Write, e: &EventRecord, json: bool) -> anyhow::Result<()> {
    if json {
        let details: serde_json::Value =
            serde_json::from_str(&e.details).unwrap_or_else(|_| serde_json::Value::String(e.details.clone()));
        let line = serde_json::json!({
            "id": e.id,
            "sequence": e.sequence,
            "origin": e.origin,
            "timestamp": timestamp(e.timestamp_ms),
            "level": e.level,
            "event_type": e.event_type,
            "message": e.message,
            "details": details,
        });
        writeln!(out, "{line}")?;
    } else {
        writeln!(
            out,
            "{:>6}  {}  {:<5}  {:<17}  {:<28}  {}",
            e.sequence,
            timestamp(e.timestamp_ms),
            e.level,
            e.event_type,
            e.origin,
            e.message
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_durations_and_times() {
        let now = chrono::Utc::now().timestamp_millis();
        let t = parse_since("30m").unwrap();
        assert!((now - 30 * 60_000 - t).abs() < 5_000);
        assert_eq!(parse_since("2025-01-31T08:00:00Z").unwrap(), 1_738_310_400_000);
        let err = parse_since("yesterday").unwrap_err().to_string();
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
