//! Located, coded diagnostics: the one shape every input error takes, so the CLI, the golden tests
//! and `plan --json` all render the same facts.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A position in an input file, 1-based, as editors count it (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct Location {
    pub line: u32,
    pub column: u32,
}

impl Location {
    pub const fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }
}

/// The stable error codes of DESIGN §4.5. Scripts match on these; never rename one.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The file cannot be read as YAML/TOML text (including non-UTF-8, oversize, too deep).
    Syntax,
    /// Unknown field, wrong type, missing field, or a value that is not valid for its field.
    Schema,
    DuplicateName,
    Cycle,
    ClassMismatch,
    NoEgressRule,
    Unplaceable,
    UnknownIdentity,
    UnknownPool,
    UnknownTable,
    /// `depends_on` names a task that the job does not have.
    UnknownTask,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::Schema => "schema",
            Code::DuplicateName => "duplicate_name",
            Code::Cycle => "cycle",
            Code::ClassMismatch => "class_mismatch",
            Code::NoEgressRule => "no_egress_rule",
            Code::Unplaceable => "unplaceable",
            Code::UnknownIdentity => "unknown_identity",
            Code::UnknownPool => "unknown_pool",
            Code::UnknownTable => "unknown_table",
            Code::UnknownTask => "unknown_task",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem in one input file, with what a person needs to fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub location: Location,
    /// Key path inside the document, e.g. `tasks[2].source.port`; empty for the whole file.
    pub path: String,
    pub job: Option<String>,
    pub task: Option<String>,
    pub code: Code,
    pub message: String,
    pub hint: String,
}

impl Diagnostic {
    pub fn new(code: Code, location: Location, message: impl Into<String>) -> Self {
        Self {
            file: PathBuf::new(),
            location,
            path: String::new(),
            job: None,
            task: None,
            code,
            message: message.into(),
            hint: String::new(),
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = hint.into();
        self
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = location;
        self
    }

    pub fn in_file(mut self, file: &Path) -> Self {
        self.file = file.to_path_buf();
        self
    }

    pub fn for_task(mut self, job: &str, task: Option<&str>) -> Self {
        self.job = Some(job.to_owned());
        self.task = task.map(str::to_owned);
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: error[code]: message (at key.path)` then an indented hint line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error[{}]: {}",
            self.file.display(),
            self.location.line,
            self.location.column,
            self.code,
            self.message
        )?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", self.hint)?;
        }
        Ok(())
    }
}

/// Orders diagnostics the way a person reads them: by file as given, then by position.
pub fn sort_in_reading_order(diagnostics: &mut [Diagnostic], file_order: &[PathBuf]) {
    let rank = |file: &Path| file_order.iter().position(|f| f == file).unwrap_or(usize::MAX);
    diagnostics.sort_by_key(|d| (rank(&d.file), d.location, d.code));
}
