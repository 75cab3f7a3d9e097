//! DESIGN §4.4 rules 1–2: a task's connectivity needs follow from what it declares, and its
//! compute follows from its needs. The class tag is a claim to check, never an override.

use switchyard_config::manifest::{Source, Task, WorkloadClass};
use switchyard_config::value::{Endpoint, Host};

pub use switchyard_config::manifest::Compute;

/// What a task needs from the network, derived from its declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The class its declaration implies.
    pub inferred: WorkloadClass,
    /// External `host:port`s it connects to.
    pub destinations: Vec<Endpoint>,
    /// Client identity the task itself asks for (rules may add more).
    pub identity: Option<String>,
    /// Stateful session to keep on one node: a Kafka consumer group.
    pub session: Option<String>,
    /// Holds a connection open for the whole attempt (databases, Kafka).
    pub long_lived: bool,
    /// What the task declares, in words: `sqlserver source`, `sql`, `run task`.
    pub declared: &'static str,
}

impl Needs {
    pub fn compute(&self) -> Compute {
        if self.destinations.is_empty() { Compute::Serverless } else { Compute::Dedicated }
    }
}

/// Default ports of the engines, when a manifest leaves `port` out.
fn default_port(source: &Source) -> u16 {
    match source {
        Source::Sqlserver(_) => 1433,
        Source::Postgres(_) => 5432,
        Source::Kafka(_) => 9092,
        Source::Https(_) => 443,
    }
}

pub fn derive_needs(job: &str, task: &Task) -> Needs {
    match (&task.source, &task.run) {
        (Some(source), _) => source_needs(job, task, source),
        (None, Some(run)) if !run.destinations.is_empty() => Needs {
            inferred: WorkloadClass::IngestApi,
            destinations: run.destinations.clone(),
            identity: None,
            session: None,
            long_lived: false,
            declared: "run task with destinations",
        },
        (None, Some(_)) => Needs {
            inferred: WorkloadClass::Transform,
            destinations: vec![],
            identity: None,
            session: None,
            long_lived: false,
            declared: "run task without destinations",
        },
        (None, None) => Needs {
            inferred: WorkloadClass::Transform,
            destinations: vec![],
            identity: None,
            session: None,
            long_lived: false,
            declared: "sql",
        },
    }
}

fn source_needs(job: &str, task: &Task, source: &Source) -> Needs {
    match source {
        Source::Sqlserver(db) | Source::Postgres(db) => {
            let port = db.port.map_or(default_port(source), |p| p.0);
            let host = Host::parse(&db.host).unwrap_or_else(|_| Host::Name(db.host.to_ascii_lowercase()));
            Needs {
                inferred: WorkloadClass::IngestJdbc,
                destinations: vec![Endpoint::new(host, port)],
                identity: None,
                session: None,
                long_lived: true,
                declared: if matches!(source, Source::Sqlserver(_)) {
                    "sqlserver source"
                } else {
                    "postgres source"
                },
            }
        }
        Source::Kafka(k) => Needs {
            inferred: WorkloadClass::IngestKafka,
            destinations: k.brokers.clone(),
            identity: k.identity.clone(),
            session: Some(k.group.clone().unwrap_or_else(|| format!("switchyard-{job}-{}", task.name))),
            long_lived: true,
            declared: "kafka source",
        },
        Source::Https(h) => Needs {
            inferred: WorkloadClass::IngestApi,
            destinations: vec![h.url.endpoint().clone()],
            identity: h.identity.clone(),
            session: None,
            long_lived: false,
            declared: "https source",
        },
    }
}

/// The external `host:port`s a source connects to (default ports filled in), as placement sees them.
pub fn source_destinations(source: &Source) -> Vec<Endpoint> {
    match source {
        Source::Sqlserver(db) | Source::Postgres(db) => {
            let port = db.port.map_or(default_port(source), |p| p.0);
            let host = Host::parse(&db.host).unwrap_or_else(|_| Host::Name(db.host.to_ascii_lowercase()));
            vec![Endpoint::new(host, port)]
        }
        Source::Kafka(k) => k.brokers.clone(),
        Source::Https(h) => vec![h.url.endpoint().clone()],
    }
}

/// Why a declared class contradicts the needs, and what to write instead.
pub fn class_mismatch(declared: WorkloadClass, needs: &Needs) -> Option<(String, String)> {
    if declared == needs.inferred {
        return None;
    }
    let inferred = needs.inferred.as_str();
    Some(match (declared, needs.compute()) {
        (WorkloadClass::Transform, Compute::Dedicated) => (
            format!(
                "task is tagged `transform` but its {} connects to {}; transforms read only lake tables",
                needs.declared,
                needs.destinations.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "tag it `{inferred}`, or move the external read into an ingest task that writes a bronze \
                 table and read that table here"
            ),
        ),
        (_, Compute::Serverless) => (
            format!(
                "task is tagged `{}` but its {} reaches no external destination",
                declared.as_str(),
                needs.declared
            ),
            format!("tag it `{inferred}` (it runs serverless), or declare the destinations it connects to"),
        ),
        (_, Compute::Dedicated) => (
            format!("task is tagged `{}` but it has a {}", declared.as_str(), needs.declared),
            format!("tag it `{inferred}`, or leave `class` out to have it inferred"),
        ),
    })
}
