use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Pool, Settings};
use crate::diagnostic::{Code, Diagnostic, Location};
use crate::document::{Document, NodeKind, Seg, Sink, from_node_at};
use crate::suggest;

/// Prefix of the environment variables that override settings: `SWITCHYARD__SERVERLESS__MAX_WORKERS`.
pub const ENV_PREFIX: &str = "SWITCHYARD";
const ENV_SEPARATOR: &str = "__";

/// Settings after layering, with the file they came from (if any).
#[derive(Debug, Clone)]
pub struct LoadedSettings {
    pub doc: Option<Document>,
    pub settings: Settings,
    /// The environment variables that overrode something, by name (values are never kept).
    pub env_overrides: Vec<String>,
    /// For each pool of `settings.pools`, its index in the file's `[[pools]]` (pools that failed
    /// to read are left out).
    pub pool_index: Vec<usize>,
    pub clean: bool,
}

impl LoadedSettings {
    /// Built-in defaults, for when the settings file could not be read at all.
    pub fn unreadable() -> Self {
        LoadedSettings {
            doc: None,
            settings: Settings::default(),
            env_overrides: vec![],
            pool_index: vec![],
            clean: false,
        }
    }
}

const SECTIONS: &[&str] = &[
    "control_plane",
    "lake",
    "pools",
    "serverless",
    "transform",
    "scheduler",
    "identities",
    "prices",
    "alerts",
];

/// Reads the file alone, one section (and one pool) at a time, so that every problem in it is
/// reported; returns what could be read, over the defaults.
fn read_file(doc: &Document, sink: &Sink) -> (Settings, Vec<usize>) {
    let mut settings = Settings::default();
    let mut pool_index = Vec::new();
    let NodeKind::Map(entries) = &doc.root.kind else {
        return (settings, pool_index);
    };
    for (key, node) in entries {
        let at = [Seg::Key(key.name.as_str())];
        match key.name.as_str() {
            "control_plane" => settings.control_plane = from_node_at(node, &at, sink).unwrap_or_default(),
            "lake" => settings.lake = from_node_at(node, &at, sink).unwrap_or_default(),
            "serverless" => settings.serverless = from_node_at(node, &at, sink).unwrap_or_default(),
            "transform" => settings.transform = from_node_at(node, &at, sink).unwrap_or_default(),
            "scheduler" => settings.scheduler = from_node_at(node, &at, sink).unwrap_or_default(),
            "identities" => settings.identities = from_node_at(node, &at, sink).unwrap_or_default(),
            "prices" => settings.prices = from_node_at(node, &at, sink).unwrap_or_default(),
            "alerts" => settings.alerts = from_node_at(node, &at, sink).unwrap_or_default(),
            "pools" => match &node.kind {
                NodeKind::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(pool) =
                            from_node_at::<Pool>(item, &[Seg::Key("pools"), Seg::Index(i)], sink)
                        {
                            settings.pools.push(pool);
                            pool_index.push(i);
                        }
                    }
                }
                _ => sink.borrow_mut().push(
                    doc.error(Code::Schema, &at, "`pools` must be an array of tables")
                        .with_hint("write each pool as a `[[pools]]` table"),
                ),
            },
            other => sink.borrow_mut().push(
                Diagnostic::new(Code::Schema, key.location, format!("unknown section `{other}`"))
                    .with_path(other)
                    .with_hint(format!(
                        "{}settings have the sections {}",
                        suggest::did_you_mean(other, SECTIONS.iter().copied()),
                        SECTIONS.join(", ")
                    )),
            ),
        }
    }
    (settings, pool_index)
}

/// `doc` is the settings file, if one is used; `env` the process environment
/// (or a test's stand-in).
pub(crate) fn load_settings(
    doc: Option<Document>,
    env: &BTreeMap<String, String>,
    sink: &Sink,
) -> LoadedSettings {
    let before = sink.borrow().len();
    let prefix = format!("{ENV_PREFIX}{ENV_SEPARATOR}");
    let overrides: BTreeMap<String, String> =
        env.iter().filter(|(k, _)| k.starts_with(&prefix)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let env_overrides: Vec<String> = overrides.keys().cloned().collect();

    // First the file alone, through the located deserializer.
    let (partial, pool_index) = match &doc {
        Some(doc) => {
            let read = read_file(doc, sink);
            for d in sink.borrow_mut()[before..].iter_mut() {
                d.file = doc.file().to_path_buf();
            }
            read
        }
        None => (Settings::default(), vec![]),
    };
    if sink.borrow().len() != before {
        return LoadedSettings { doc, settings: partial, env_overrides, pool_index, clean: false };
    }

    // Then the layers: defaults (serde) < file < environment.
    let mut builder = config::Config::builder();
    if let Some(doc) = &doc {
        builder = builder.add_source(config::File::from_str(doc.text(), config::FileFormat::Toml));
    }
    builder = builder.add_source(
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .try_parsing(true)
            .source(Some(overrides.into_iter().collect())),
    );
    let layered = builder.build().and_then(config::Config::try_deserialize::<Settings>);
    match layered {
        Ok(settings) => LoadedSettings { doc, settings, env_overrides, pool_index, clean: true },
        Err(err) => {
            sink.borrow_mut().push(env_error(&err, &env_overrides));
            LoadedSettings { doc, settings: partial, env_overrides, pool_index, clean: false }
        }
    }
}

/// The file alone was valid, so a layering error comes from the environment: name the variable.
fn env_error(err: &config::ConfigError, vars: &[String]) -> Diagnostic {
    let key = match err {
        config::ConfigError::Type { key: Some(key), .. } => Some(key.clone()),
        _ => None,
    };
    let var = key
        .as_deref()
        .map(|k| format!("{ENV_PREFIX}{ENV_SEPARATOR}{}", k.replace('.', ENV_SEPARATOR).to_uppercase()))
        .filter(|v| vars.contains(v))
        .unwrap_or_else(|| vars.join(", "));
    Diagnostic::new(Code::Schema, Location::default(), format!("invalid setting from the environment: {err}"))
        .in_file(&PathBuf::from(format!("${var}")))
        .with_hint(format!(
            "fix or unset {var}; variables are named {ENV_PREFIX}__SECTION__KEY, e.g. {ENV_PREFIX}__SERVERLESS__MAX_WORKERS=4"
        ))
}
