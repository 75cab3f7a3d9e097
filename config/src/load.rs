//! Loading a whole set of inputs — manifests, egress policy, settings — and running every check
//! that looks at one document at a time. All problems of all files come back together.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::Error;
use crate::diagnostic::{Code, Diagnostic, sort_in_reading_order};
use crate::document::{Document, MAX_INPUT_BYTES, Seg, Sink, decode_text, parse_toml, parse_yaml, too_large};
use crate::egress::{LoadedPolicy, check_policy, load_policy};
use crate::manifest::{LoadedManifest, check_manifest, load_manifest};
use crate::settings::{LoadedSettings, check_settings, load_settings};

/// Reads one manifest from memory, with every check that needs only that manifest: the entry
/// point for fuzzing and for tools that hold a manifest in an editor buffer. `path` names it in
/// diagnostics.
pub fn parse_manifest(path: &Path, bytes: &[u8]) -> (Option<LoadedManifest>, Vec<Diagnostic>) {
    let sink = Sink::default();
    let manifest = parse_document(path, bytes, Format::Yaml, &sink).and_then(|doc| load_manifest(doc, &sink));
    let mut diagnostics = sink.into_inner();
    if let Some(m) = &manifest {
        check_manifest(m, &mut diagnostics);
    }
    (manifest, diagnostics)
}

/// Reads and checks an egress policy from memory (e.g. one submitted to `egress apply`), against
/// the given settings for identity references.
pub fn parse_policy(
    path: &Path,
    bytes: &[u8],
    settings: Option<&crate::settings::Settings>,
) -> (LoadedPolicy, Vec<Diagnostic>) {
    let sink = Sink::default();
    let policy = match parse_document(path, bytes, Format::Yaml, &sink) {
        Some(doc) => load_policy(doc, &sink),
        None => LoadedPolicy { clean: false, ..LoadedPolicy::empty() },
    };
    let mut diagnostics = sink.into_inner();
    check_policy(&policy, settings, &mut diagnostics);
    (policy, diagnostics)
}

/// One manifest file's outcome: the manifest if it could be read, and its problems.
type ReadManifest = (Option<LoadedManifest>, Vec<Diagnostic>);

pub const DEFAULT_SETTINGS: &str = "switchyard.toml";
pub const DEFAULT_EGRESS: &str = "egress.yaml";

/// What to load. `None` for settings or egress means the default path, which may be absent.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub paths: Vec<PathBuf>,
    pub settings: Option<PathBuf>,
    pub egress: Option<PathBuf>,
    /// Environment for `SWITCHYARD__…` overrides; `None` reads the process environment.
    pub env: Option<BTreeMap<String, String>>,
    /// Manifests given as contents rather than files (e.g. submitted over the API), read after
    /// `paths`. The path names each one in diagnostics and locates its `run` working directory.
    pub inline: Vec<(PathBuf, Vec<u8>)>,
}

/// Everything `validate` and `plan` work from.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub manifests: Vec<LoadedManifest>,
    pub policy: LoadedPolicy,
    pub settings: LoadedSettings,
    /// Problems found so far, in reading order.
    pub diagnostics: Vec<Diagnostic>,
    /// Things a person should know that are not errors (e.g. "no egress.yaml: everything denied").
    pub notes: Vec<String>,
    /// Every file read, in reading order.
    pub files: Vec<PathBuf>,
}

impl Inputs {
    /// Whether every manifest read without syntax or schema errors, so that cross-references
    /// between them can be trusted (a task that failed to read must not look like a missing one).
    pub fn manifests_clean(&self) -> bool {
        self.manifests.iter().all(|m| m.clean)
            && !self.diagnostics.iter().any(|d| d.code == Code::Syntax && self.is_manifest_file(&d.file))
    }

    fn is_manifest_file(&self, file: &Path) -> bool {
        self.policy.doc.as_ref().is_none_or(|d| d.file() != file)
            && self.settings.doc.as_ref().is_none_or(|d| d.file() != file)
    }

    /// Adds diagnostics found by later stages and restores reading order.
    pub fn extend_diagnostics(&mut self, more: impl IntoIterator<Item = Diagnostic>) {
        self.diagnostics.extend(more);
        sort_in_reading_order(&mut self.diagnostics, &self.files);
    }
}

/// Reads and checks all inputs. `Err` only for I/O problems (missing paths, unreadable files);
/// problems inside files are diagnostics.
pub fn load(options: &LoadOptions) -> Result<Inputs, Error> {
    let mut notes = Vec::new();
    let mut files = Vec::new();

    let settings_path = resolve_optional(options.settings.as_deref(), DEFAULT_SETTINGS, "settings file")?;
    let egress_path = resolve_optional(options.egress.as_deref(), DEFAULT_EGRESS, "egress policy")?;
    let skip: Vec<PathBuf> =
        [&settings_path, &egress_path].into_iter().flatten().filter_map(|p| p.canonicalize().ok()).collect();
    let manifest_paths = discover(&options.paths, &skip)?;

    files.extend(manifest_paths.iter().cloned());
    files.extend(options.inline.iter().map(|(path, _)| path.clone()));
    files.extend(egress_path.iter().cloned());
    files.extend(settings_path.iter().cloned());
    if egress_path.is_none() {
        notes.push(format!("no {DEFAULT_EGRESS} here and no --egress given: the policy is empty, so every destination is denied"));
    }
    if settings_path.is_none() {
        notes.push(format!(
            "no {DEFAULT_SETTINGS} here and no --settings given: built-in defaults, which define no pools"
        ));
    }
    let sources: Vec<(&PathBuf, Option<&[u8]>)> = manifest_paths
        .iter()
        .map(|p| (p, None))
        .chain(options.inline.iter().map(|(p, bytes)| (p, Some(bytes.as_slice()))))
        .collect();
    let env = options.env.clone().unwrap_or_else(|| std::env::vars().collect());

    // Manifests are independent: read and check them on every core, then merge in file order.
    // The policy and the settings (one big file each, read on one core) are read alongside them
    // instead of after, when all but one core would sit idle.
    let (read, side) = rayon::join(
        || {
            sources
                .par_iter()
                .map(|(path, bytes)| {
                    let local = Sink::default();
                    let doc = match bytes {
                        Some(bytes) => parse_document(path, bytes, Format::Yaml, &local),
                        None => read_document(path, Format::Yaml, &local)?,
                    };
                    let manifest = match doc {
                        Some(doc) => load_manifest(doc, &local),
                        None => None,
                    };
                    let mut diagnostics = local.into_inner();
                    if let Some(m) = &manifest {
                        check_manifest(m, &mut diagnostics);
                    }
                    Ok((manifest, diagnostics))
                })
                .collect::<Vec<Result<ReadManifest, Error>>>()
        },
        || read_policy_and_settings(egress_path.as_deref(), settings_path.as_deref(), &env),
    );
    let mut manifests = Vec::with_capacity(read.len());
    let mut diagnostics = Vec::new();
    // I/O errors in reading order: a manifest's before the policy's before the settings'.
    for result in read {
        let (manifest, found) = result?;
        manifests.extend(manifest);
        diagnostics.extend(found);
    }
    let (policy, settings, found) = side?;
    diagnostics.extend(found);
    check_duplicate_jobs(&manifests, &mut diagnostics);
    // Each runs on what could be read; references into the other file only when it read cleanly.
    check_policy(&policy, settings.clean.then_some(&settings.settings), &mut diagnostics);
    check_settings(&settings, &mut diagnostics);
    sort_in_reading_order(&mut diagnostics, &files);
    Ok(Inputs { manifests, policy, settings, diagnostics, notes, files })
}

/// The egress policy and the settings, with the problems found reading them.
fn read_policy_and_settings(
    egress_path: Option<&Path>,
    settings_path: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<(LoadedPolicy, LoadedSettings, Vec<Diagnostic>), Error> {
    let sink = Sink::default();
    let policy = match egress_path {
        Some(path) => match read_document(path, Format::Yaml, &sink)? {
            Some(doc) => load_policy(doc, &sink),
            None => LoadedPolicy { clean: false, ..LoadedPolicy::empty() },
        },
        None => LoadedPolicy::empty(),
    };
    let settings = match settings_path {
        Some(path) => match read_document(path, Format::Toml, &sink)? {
            Some(doc) => load_settings(Some(doc), env, &sink),
            None => LoadedSettings::unreadable(),
        },
        None => load_settings(None, env, &sink),
    };
    Ok((policy, settings, sink.into_inner()))
}

fn check_duplicate_jobs(manifests: &[LoadedManifest], out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, &LoadedManifest> = HashMap::new();
    for m in manifests {
        if let Some(first) = seen.insert(&m.manifest.job, m) {
            let at = first.doc.locate(&[Seg::Key("job")]);
            out.push(
                m.doc
                    .error(
                        Code::DuplicateName,
                        &[Seg::Key("job")],
                        format!("job `{}` is defined twice", m.manifest.job),
                    )
                    .with_hint(format!(
                        "it is also defined at {}:{}:{}; job names must be unique",
                        first.doc.file().display(),
                        at.line,
                        at.column
                    ))
                    .for_task(&m.manifest.job, None),
            );
        }
    }
}

/// An explicit path must exist; the default path may be absent (`Ok(None)`).
fn resolve_optional(
    explicit: Option<&Path>,
    default: &str,
    what: &'static str,
) -> Result<Option<PathBuf>, Error> {
    match explicit {
        Some(path) if path.is_file() => Ok(Some(path.to_path_buf())),
        Some(path) => Err(Error::NotFound { what, path: path.to_path_buf() }),
        None => Ok(Path::new(default).is_file().then(|| PathBuf::from(default))),
    }
}

/// Files as given, directories walked for `*.yaml`/`*.yml` in name order (hidden entries and the
/// settings and policy files themselves skipped).
fn discover(paths: &[PathBuf], skip: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|cause| match cause.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { what: "manifest path", path: path.clone() },
            _ => Error::Read { path: path.clone(), cause },
        })?;
        if meta.is_dir() {
            let before = out.len();
            walk(path, skip, &mut out)?;
            if out.len() == before {
                return Err(Error::NoManifests { path: path.clone() });
            }
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, skip: &[PathBuf], out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let read_err = |cause| Error::Read { path: dir.to_path_buf(), cause };
    let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    // The directory is resolved once; an entry's own path then only needs resolving when it is a
    // symbolic link (a thousand manifests were a thousand `canonicalize` calls, several stats each).
    let resolved_dir = dir.canonicalize().ok();
    for (path, kind) in entries {
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let resolved = match (&resolved_dir, path.file_name()) {
            (Some(d), Some(name)) if !kind.is_symlink() => Some(d.join(name)),
            _ => path.canonicalize().ok(),
        };
        if resolved.is_some_and(|c| skip.contains(&c)) {
            continue;
        }
        let is_dir = if kind.is_symlink() { path.is_dir() } else { kind.is_dir() };
        if is_dir {
            walk(&path, skip, out)?;
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Format {
    Yaml,
    Toml,
}

/// Reads a file into a document. `Ok(None)` when its content is unusable (the reason is in the
/// sink); `Err` when it cannot be read at all.
fn read_document(path: &Path, format: Format, sink: &Sink) -> Result<Option<Document>, Error> {
    let file = std::fs::File::open(path).map_err(|cause| Error::Read { path: path.to_path_buf(), cause })?;
    let size = file.metadata().map_or(0, |m| m.len());
    if size > MAX_INPUT_BYTES as u64 {
        sink.borrow_mut().push(too_large(size).in_file(path));
        return Ok(None);
    }
    let mut bytes = Vec::with_capacity(size.min(MAX_INPUT_BYTES as u64) as usize + 1);
    // Read one byte past the limit: enough to know the file is too big, without reading 50 MB.
    file.take(MAX_INPUT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|cause| Error::Read { path: path.to_path_buf(), cause })?;
    Ok(parse_document(path, &bytes, format, sink))
}

/// Bytes → document; problems go to the sink (with `path` as their file).
fn parse_document(path: &Path, bytes: &[u8], format: Format, sink: &Sink) -> Option<Document> {
    let text = match decode_text(bytes) {
        Ok(text) => text.to_owned(),
        Err(d) => {
            sink.borrow_mut().push(d.in_file(path));
            return None;
        }
    };
    let parsed = match format {
        Format::Yaml => parse_yaml(&text).map(|(root, problems)| {
            sink.borrow_mut().extend(problems.into_iter().map(|d| d.in_file(path)));
            root
        }),
        Format::Toml => parse_toml(&text),
    };
    match parsed {
        Ok(root) => Some(Document::new(path, root, text)),
        Err(d) => {
            sink.borrow_mut().push(d.in_file(path));
            None
        }
    }
}
