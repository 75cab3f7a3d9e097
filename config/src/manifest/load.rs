//! Reading one manifest document: the job header and each task on its own, so that one bad task
//! does not hide the problems of the others.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::{Manifest, Task};
use crate::diagnostic::Code;
use crate::document::{Document, NodeKind, Seg, Sink, from_node_at, recover_opt, recover_vec};
use crate::value::{Duration, Schedule, TableName};

/// A manifest as read from its file, with what is needed to point back into it.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    pub doc: Document,
    pub manifest: Manifest,
    /// For each task of `manifest.tasks`, its index in the file's `tasks:` list (tasks that failed
    /// to read are left out of `manifest.tasks`, so the two can differ).
    pub task_index: Vec<usize>,
    /// Whether every part of the file was read without error.
    pub clean: bool,
}

impl LoadedManifest {
    /// The key path of task `i` of `manifest.tasks`.
    pub fn task_path(&self, i: usize) -> [Seg<'static>; 2] {
        [Seg::Key("tasks"), Seg::Index(self.task_index[i])]
    }
}

/// The manifest without its tasks; `tasks` is listed only so that a misspelling of it gets a
/// "did you mean".
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    job: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "recover_opt")]
    schedule: Option<Schedule>,
    #[serde(default, deserialize_with = "recover_vec")]
    external_tables: Vec<TableName>,
    #[serde(default, deserialize_with = "recover_opt")]
    sla: Option<Duration>,
    #[serde(default, deserialize_with = "recover_opt")]
    expected_interval: Option<Duration>,
    #[serde(default)]
    #[allow(dead_code)]
    tasks: Option<IgnoredAny>,
}

pub(crate) fn load_manifest(doc: Document, sink: &Sink) -> Option<LoadedManifest> {
    let before = sink.borrow().len();
    let root = &doc.root;
    match &root.kind {
        NodeKind::Null => {
            sink.borrow_mut().push(doc.error(Code::Schema, &[], "file is empty").with_hint(
                "a manifest needs `job:` and `tasks:`; see `switchyard schema manifest` or examples/jobs/",
            ));
            return None;
        }
        NodeKind::Map(_) => {}
        _ => {
            sink.borrow_mut().push(
                doc.error(
                    Code::Schema,
                    &[],
                    format!("expected a mapping with `job:` and `tasks:`, found {}", root.describe()),
                )
                .with_hint("start the file with `job: NAME` and a `tasks:` list"),
            );
            return None;
        }
    }
    let job = root.get("job").and_then(|n| n.as_str()).map(str::to_owned);
    let header: Option<Header> = from_node_at(root, &[], sink);
    attribute(sink, before, &doc, job.as_deref(), None);
    let mut tasks = Vec::new();
    let mut task_index = Vec::new();
    match root.get("tasks").map(|n| &n.kind) {
        Some(NodeKind::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = [Seg::Key("tasks"), Seg::Index(i)];
                let mark = sink.borrow().len();
                let parsed = from_node_at::<Task>(item, &path, sink);
                let name = item.get("name").and_then(|n| n.as_str());
                attribute(sink, mark, &doc, job.as_deref(), name);
                if let Some(task) = parsed {
                    tasks.push(task);
                    task_index.push(i);
                }
            }
        }
        Some(NodeKind::Null) | None => sink.borrow_mut().push(
            doc.error(Code::Schema, &[Seg::Key("tasks")], "the job has no tasks")
                .with_hint("add a `tasks:` list with at least one task"),
        ),
        Some(_) => {} // the header's deserialization reported the wrong type
    }
    attribute(sink, before, &doc, job.as_deref(), None);
    let header = header?;
    if let Some(NodeKind::Seq(items)) = root.get("tasks").map(|n| &n.kind) {
        if items.is_empty() {
            sink.borrow_mut().push(
                doc.error(Code::Schema, &[Seg::Key("tasks")], "the job has no tasks")
                    .with_hint("add at least one task under `tasks:`"),
            );
        }
    }
    attribute(sink, before, &doc, job.as_deref(), None);
    let clean = sink.borrow().len() == before;
    let manifest = Manifest {
        job: header.job,
        description: header.description,
        schedule: header.schedule,
        external_tables: header.external_tables,
        sla: header.sla,
        expected_interval: header.expected_interval,
        tasks,
    };
    Some(LoadedManifest { doc, manifest, task_index, clean })
}

/// Fills in file, job and task on the diagnostics recorded since `from` (the deserializer knows
/// only locations and key paths).
fn attribute(sink: &Sink, from: usize, doc: &Document, job: Option<&str>, task: Option<&str>) {
    for d in sink.borrow_mut()[from..].iter_mut() {
        if d.file.as_os_str().is_empty() {
            d.file = doc.file().to_path_buf();
        }
        if d.job.is_none() {
            d.job = job.map(str::to_owned);
            d.task = task.map(str::to_owned);
        }
    }
}
