use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Settings;
use crate::diagnostic::{Code, Diagnostic, Location};
use crate::document::{Document, Sink, from_node_at};

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
    pub clean: bool,
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
    if let Some(doc) = &doc {
        let _: Option<Settings> = from_node_at(&doc.root, &[], sink);
        for d in sink.borrow_mut()[before..].iter_mut() {
            d.file = doc.file().to_path_buf();
        }
    }
    let file_clean = sink.borrow().len() == before;
    if !file_clean {
        return LoadedSettings { doc, settings: Settings::default(), env_overrides, clean: false };
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
        Ok(settings) => LoadedSettings { doc, settings, env_overrides, clean: true },
        Err(err) => {
            sink.borrow_mut().push(env_error(&err, &env_overrides));
            LoadedSettings { doc, settings: Settings::default(), env_overrides, clean: false }
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
