//! Checks within one manifest that serde cannot express: names, one body per task, references
//! between tasks of the job, and combinations of fields.

use std::collections::HashMap;

use super::load::LoadedManifest;
use super::{Source, WriteMode};
use crate::diagnostic::{Code, Diagnostic};
use crate::document::Seg;

/// Job and task names become table app ids, metric labels and URL path segments.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

const NAME_HINT: &str = "use letters, digits, `_` and `-` (at most 128 characters)";

pub(crate) fn check_manifest(m: &LoadedManifest, out: &mut Vec<Diagnostic>) {
    let doc = &m.doc;
    let job = &m.manifest.job;
    let mut push = |d: Diagnostic, task: Option<&str>| out.push(d.for_task(job, task));
    if !valid_name(job) {
        push(
            doc.error(Code::Schema, &[Seg::Key("job")], format!("invalid job name `{job}`"))
                .with_hint(NAME_HINT),
            None,
        );
    }
    for (key, value) in [("sla", m.manifest.sla), ("expected_interval", m.manifest.expected_interval)] {
        if value.is_some_and(|d| d.as_std().is_zero()) {
            push(
                doc.error(Code::Schema, &[Seg::Key(key)], format!("`{key}` is zero"))
                    .with_hint(format!("write how long, e.g. `{key}: 1h`, or leave it out for the default")),
                None,
            );
        }
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, task) in m.manifest.tasks.iter().enumerate() {
        let base = m.task_path(i);
        let at = |key: &'static str| [base[0], base[1], Seg::Key(key)];
        let name = task.name.as_str();
        if !valid_name(name) {
            push(
                doc.error(Code::Schema, &at("name"), format!("invalid task name `{name}`"))
                    .with_hint(NAME_HINT),
                Some(name),
            );
        }
        if let Some(first) = seen.insert(name, i) {
            let first_line =
                doc.locate(&[m.task_path(first)[0], m.task_path(first)[1], Seg::Key("name")]).line;
            push(
                doc.error(
                    Code::DuplicateName,
                    &at("name"),
                    format!("task `{name}` is defined twice in job `{job}`"),
                )
                .with_hint(format!("the first `{name}` is at line {first_line}; rename one of them")),
                Some(name),
            );
        }
        check_body(m, i, &mut |d| push(d, Some(name)));
        for dep in &task.depends_on {
            if dep == name {
                push(
                    doc.error(Code::Cycle, &at("depends_on"), format!("task `{name}` depends on itself"))
                        .with_hint("remove it from its own `depends_on`"),
                    Some(name),
                );
            } else if !m.manifest.tasks.iter().any(|t| &t.name == dep) {
                let names = m.manifest.tasks.iter().map(|t| t.name.as_str());
                push(
                    doc.error(
                        Code::UnknownTask,
                        &at("depends_on"),
                        format!("`depends_on` names `{dep}`, which is not a task of job `{job}`"),
                    )
                    .with_hint(format!(
                        "{}dependencies name tasks of the same job",
                        crate::suggest::did_you_mean(dep, names)
                    )),
                    Some(name),
                );
            }
        }
        let mut expectation_names: HashMap<&str, ()> = HashMap::new();
        for (e, exp) in task.expectations.iter().enumerate() {
            if expectation_names.insert(exp.name.as_str(), ()).is_some() {
                push(
                    doc.error(
                        Code::DuplicateName,
                        &[base[0], base[1], Seg::Key("expectations"), Seg::Index(e), Seg::Key("name")],
                        format!("expectation `{}` is defined twice", exp.name),
                    )
                    .with_hint("give each expectation its own name; counts are reported by name"),
                    Some(name),
                );
            }
        }
        if let Some(r) = &task.retries {
            if r.max == 0 && r.retry_on.as_ref().is_some_and(|on| !on.is_empty()) {
                push(
                    doc.error(
                        Code::Schema,
                        &[base[0], base[1], Seg::Key("retries"), Seg::Key("retry_on")],
                        "`retry_on` with `max: 0` retries nothing",
                    )
                    .with_hint("set `max` to the number of retries you want, or remove `retry_on`"),
                    Some(name),
                );
            }
            if let (Some(b), Some(mb)) = (r.backoff, r.max_backoff) {
                if b > mb {
                    push(
                        doc.error(
                            Code::Schema,
                            &[base[0], base[1], Seg::Key("retries"), Seg::Key("max_backoff")],
                            format!("max_backoff {mb} is shorter than backoff {b}"),
                        )
                        .with_hint("raise max_backoff or lower backoff"),
                        Some(name),
                    );
                }
            }
        }
    }
}

/// Exactly one of `source`, `sql`, `run`; the fields each needs.
fn check_body(m: &LoadedManifest, i: usize, push: &mut dyn FnMut(Diagnostic)) {
    let doc = &m.doc;
    let task = &m.manifest.tasks[i];
    let base = m.task_path(i);
    let at = |key: &'static str| [base[0], base[1], Seg::Key(key)];
    let present: Vec<&str> = ["source", "sql", "run"].into_iter().filter(|k| doc.has(&at(k))).collect();
    match present.as_slice() {
        [] => push(
            doc.error(Code::Schema, &base, format!("task `{}` has nothing to do", task.name))
                .with_hint("give it a `source:` (ingest), `sql:` (transform) or `run:` (program)"),
        ),
        [_] => {}
        [first, second, ..] => push(
            doc.error(Code::Schema, &at(second), format!("task `{}` has both `{first}` and `{second}`", task.name))
                .with_hint("split it into two tasks; one reads from `source` and writes a table, the other reads that table"),
        ),
    }
    let needs_sink = task.source.is_some() || task.sql.is_some();
    if needs_sink && task.sink.is_none() && !doc.has(&at("sink")) {
        push(
            doc.error(Code::Schema, &base, format!("task `{}` has no `sink`", task.name))
                .with_hint("add `sink: { table: schema.table }` naming the lake table it writes"),
        );
    }
    if let Some(sink) = &task.sink {
        let mode = sink.mode.unwrap_or_default();
        if mode == WriteMode::Merge && sink.keys.is_empty() {
            push(
                doc.error(
                    Code::Schema,
                    &[base[0], base[1], Seg::Key("sink"), Seg::Key("mode")],
                    "`merge` needs key columns",
                )
                .with_hint("add `keys: [column, …]` to the sink"),
            );
        }
        if mode != WriteMode::Merge && !sink.keys.is_empty() {
            push(
                doc.error(
                    Code::Schema,
                    &[base[0], base[1], Seg::Key("sink"), Seg::Key("keys")],
                    "`keys` only apply to `mode: merge`",
                )
                .with_hint("set `mode: merge` or remove `keys`"),
            );
        }
    }
    if let (Some(engine), None) = (task.engine, &task.sql) {
        push(
            doc.error(
                Code::Schema,
                &at("engine"),
                format!("task `{}` declares `engine: {}` but is not a transform", task.name, engine.as_str()),
            )
            .with_hint("only `sql` tasks run on a query engine; remove `engine`"),
        );
    }
    if task.trigger.is_some() && task.sql.is_none() {
        push(
            doc.error(
                Code::Schema,
                &at("trigger"),
                format!("task `{}` declares `trigger: on_update` but is not a transform", task.name),
            )
            .with_hint(
                "only `sql` tasks run when a table they read changes (Switchyard knows what SQL reads); \
                 remove `trigger`, or give the job a `schedule`",
            ),
        );
    }
    if task.trigger.is_some() && task.sql.is_some() && task.mode() == super::RunMode::Continuous {
        push(
            doc.error(
                Code::Schema,
                &at("trigger"),
                format!("task `{}` is continuous and also declares `trigger: on_update`", task.name),
            )
            .with_hint(
                "a continuous task never finishes, so a triggered run of it would never start; \
                 remove `trigger` or `mode: continuous`",
            ),
        );
    }
    if let Some(sql) = &task.sql {
        if sql.trim().is_empty() {
            push(
                doc.error(Code::Schema, &at("sql"), "`sql` is empty")
                    .with_hint("write the SELECT that produces the sink table"),
            );
        }
    }
    if let Some(run) = &task.run {
        if run.command.is_empty() || run.command[0].is_empty() {
            push(
                doc.error(
                    Code::Schema,
                    &[base[0], base[1], Seg::Key("run"), Seg::Key("command")],
                    "`command` is empty",
                )
                .with_hint("write the program and its arguments, e.g. [\"python3\", \"export.py\"]"),
            );
        }
    }
    let src = [base[0], base[1], Seg::Key("source")];
    let src_at = |key: &'static str| [src[0], src[1], src[2], Seg::Key(key)];
    match &task.source {
        Some(Source::Sqlserver(db) | Source::Postgres(db)) => {
            if let Err(e) = crate::value::Host::parse(&db.host) {
                push(doc.error(Code::Schema, &src_at("host"), e.message).with_hint(e.hint));
            }
            if db.password_env.is_some() && db.password_file.is_some() {
                push(
                    doc.error(
                        Code::Schema,
                        &src_at("password_file"),
                        "both `password_env` and `password_file` are set",
                    )
                    .with_hint("keep one of them"),
                );
            }
        }
        Some(Source::Kafka(k)) => {
            if k.brokers.is_empty() && doc.seq_len(&src_at("brokers")) == Some(0) {
                push(
                    doc.error(Code::Schema, &src_at("brokers"), "no brokers listed")
                        .with_hint("list at least one bootstrap broker as host:port"),
                );
            }
        }
        Some(Source::Https(h)) => {
            if let Some(p) = &h.pagination {
                let styles = [p.cursor_field.is_some(), p.next_link.is_some(), p.page_param.is_some()];
                if styles.iter().filter(|s| **s).count() != 1 {
                    push(
                        doc.error(Code::Schema, &src_at("pagination"), "pagination needs exactly one of `cursor_field`, `next_link`, `page_param`")
                            .with_hint("pick the style the API uses: a cursor in the body, a next-page URL, or page numbers"),
                    );
                }
            }
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::Code;

    #[test]
    fn trigger_is_only_for_transforms() {
        let yaml = "job: j\ntasks:\n  - name: export\n    run: { command: [\"true\"] }\n    trigger: on_update\n  \
                    - name: silver\n    sql: SELECT 1 AS x\n    sink: { table: silver.x }\n    trigger: on_update\n";
        let (manifest, diagnostics) =
            crate::parse_manifest(std::path::Path::new("jobs/j.yaml"), yaml.as_bytes());
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let d = &diagnostics[0];
        assert_eq!((d.code, d.location.line, d.location.column), (Code::Schema, 5, 14), "{d:?}");
        assert!(d.message.contains("`export`") && d.message.contains("not a transform"), "{}", d.message);
        assert!(d.hint.contains("remove `trigger`"), "{}", d.hint);
        assert_eq!(d.task.as_deref(), Some("export"));
        let tasks = manifest.unwrap().manifest.tasks;
        assert_eq!(tasks[1].trigger, Some(crate::manifest::Trigger::OnUpdate));

        let yaml = "job: j\ntasks:\n  - name: s\n    sql: SELECT 1 AS x\n    sink: { table: silver.x }\n    \
                    mode: continuous\n    trigger: on_update\n";
        let (_, diagnostics) = crate::parse_manifest(std::path::Path::new("j.yaml"), yaml.as_bytes());
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert_eq!(diagnostics[0].location.line, 7);
        assert!(diagnostics[0].message.contains("continuous"), "{}", diagnostics[0].message);
    }

    #[test]
    fn engine_is_only_for_transforms() {
        let yaml = "job: j\ntasks:\n  - name: export\n    run: { command: [\"true\"] }\n    engine: distributed\n  \
                    - name: silver\n    sql: SELECT 1 AS x\n    sink: { table: silver.x }\n    engine: distributed\n";
        let (manifest, diagnostics) = crate::parse_manifest(std::path::Path::new("j.yaml"), yaml.as_bytes());
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        let d = &diagnostics[0];
        assert_eq!((d.code, d.location.line, d.location.column), (Code::Schema, 5, 13), "{d:?}");
        assert!(d.message.contains("`export`") && d.hint.contains("remove `engine`"), "{d:?}");
        let tasks = manifest.unwrap().manifest.tasks;
        assert_eq!(tasks[1].engine, Some(crate::manifest::Engine::Distributed));
    }

    #[test]
    fn health_expectations_sla_and_expected_interval() {
        let yaml = "job: j\nschedule: \"0 */6 * * *\"\nsla: 45m\nexpected_interval: 13h\ntasks:\n  - name: t\n    run: { command: [\"true\"] }\n";
        let (manifest, diagnostics) = crate::parse_manifest(std::path::Path::new("j.yaml"), yaml.as_bytes());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let m = manifest.unwrap().manifest;
        assert_eq!(m.sla.unwrap().as_std().as_secs(), 45 * 60);
        assert_eq!(m.expected_interval.unwrap().as_std().as_secs(), 13 * 3600);

        let yaml = "job: j\nsla: 0s\nexpected_interval: soon\ntasks:\n  - name: t\n    run: { command: [\"true\"] }\n";
        let (_, diagnostics) = crate::parse_manifest(std::path::Path::new("j.yaml"), yaml.as_bytes());
        let mut found: Vec<(u32, &str)> =
            diagnostics.iter().map(|d| (d.location.line, d.message.as_str())).collect();
        found.sort();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].0 == 2 && found[0].1.contains("`sla` is zero"), "{found:?}");
        assert!(found[1].0 == 3 && found[1].1.contains("invalid duration `soon`"), "{found:?}");
    }
}
