//! Data quality checks on a transform's output rows, as Delta Live Tables expectations work:
//! `warn` keeps and counts, `drop` removes and counts, `quarantine` removes the rows into
//! `<table>__quarantine` with the names of the checks they failed, `fail` fails the task before
//! anything is committed. A check that evaluates to NULL is not satisfied: a row the check cannot
//! vouch for is not a valid row.

use std::sync::Arc;

use serde::Serialize;
use switchyard_config::manifest::{Expectation, OnViolation};
use switchyard_lake::arrow::array::{Array, ArrayRef, BooleanArray, ListBuilder, StringBuilder};
use switchyard_lake::arrow::compute::{filter_record_batch, not, or_kleene};
use switchyard_lake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use switchyard_lake::arrow::record_batch::RecordBatch;

use crate::Error;

/// The column a quarantined row carries: the names of the checks it failed.
pub const FAILED_CHECKS_COLUMN: &str = "_failed_expectations";

/// The prefix of the columns the checks are computed into (dropped before writing).
pub(crate) const CHECK_PREFIX: &str = "__switchyard_check_";

/// Violations of one expectation in one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub name: String,
    pub action: &'static str,
    pub check: String,
    pub violations: u64,
}

/// Splits batches (output columns followed by one boolean column per expectation) into kept rows
/// and quarantined rows, counting violations. It holds no rows: each batch's parts go on to the
/// writers as they come.
#[derive(Debug)]
pub(crate) struct Checker {
    rules: Vec<(String, String, OnViolation)>,
    counts: Vec<u64>,
    output: SchemaRef,
    quarantine: SchemaRef,
    quarantined: u64,
}

/// One batch's rows, split.
#[derive(Debug, Default)]
pub(crate) struct Split {
    pub(crate) kept: Option<RecordBatch>,
    /// With [`FAILED_CHECKS_COLUMN`].
    pub(crate) quarantined: Option<RecordBatch>,
}

pub(crate) fn action(on: OnViolation) -> &'static str {
    match on {
        OnViolation::Warn => "warn",
        OnViolation::Drop => "drop",
        OnViolation::Fail => "fail",
        OnViolation::Quarantine => "quarantine",
    }
}

impl Checker {
    /// `output` is the query's schema without the check columns.
    pub(crate) fn new(expectations: &[Expectation], output: SchemaRef) -> Checker {
        let mut fields: Vec<Field> = output.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(
            FAILED_CHECKS_COLUMN,
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            false,
        ));
        Checker {
            rules: expectations
                .iter()
                .map(|e| (e.name.clone(), e.check.clone(), e.on_violation.unwrap_or_default()))
                .collect(),
            counts: vec![0; expectations.len()],
            output,
            quarantine: Arc::new(Schema::new(fields)),
            quarantined: 0,
        }
    }

    /// The schema of quarantined rows: the output's columns and [`FAILED_CHECKS_COLUMN`].
    pub(crate) fn quarantine_schema(&self) -> SchemaRef {
        self.quarantine.clone()
    }

    pub(crate) fn push(&mut self, batch: RecordBatch) -> Result<Split, Error> {
        let width = self.output.fields().len();
        let arrow = |e: switchyard_lake::arrow::error::ArrowError| Error::internal(e.to_string());
        if self.rules.is_empty() {
            return Ok(Split { kept: Some(batch), quarantined: None });
        }
        // valid[i] is true where check i holds (NULL counts as not holding).
        let mut failed: Vec<BooleanArray> = Vec::with_capacity(self.rules.len());
        for (i, _) in self.rules.iter().enumerate() {
            let column = batch.column(width + i);
            let Some(holds) = column.as_any().downcast_ref::<BooleanArray>() else {
                return Err(Error::Expectation {
                    name: self.rules[i].0.clone(),
                    check: self.rules[i].1.clone(),
                    message: format!(
                        "the check is not a boolean expression (it yields {})",
                        column.data_type()
                    ),
                });
            };
            let bad: BooleanArray = holds.iter().map(|v| Some(v != Some(true))).collect();
            self.counts[i] += bad.true_count() as u64;
            failed.push(bad);
        }
        let rows = batch.num_rows();
        let none = BooleanArray::from(vec![false; rows]);
        let mut removed = none.clone();
        let mut to_quarantine = none;
        for ((_, _, on), bad) in self.rules.iter().zip(&failed) {
            match on {
                OnViolation::Drop => removed = or_kleene(&removed, bad).map_err(arrow)?,
                OnViolation::Quarantine => to_quarantine = or_kleene(&to_quarantine, bad).map_err(arrow)?,
                OnViolation::Warn | OnViolation::Fail => {}
            }
        }
        let removed = or_kleene(&removed, &to_quarantine).map_err(arrow)?;
        let data = batch.project(&(0..width).collect::<Vec<_>>()).map_err(arrow)?;
        let data = RecordBatch::try_new(self.output.clone(), data.columns().to_vec()).map_err(arrow)?;
        if removed.true_count() == 0 {
            return Ok(Split { kept: Some(data), quarantined: None });
        }
        let keep = not(&removed).map_err(arrow)?;
        let kept = filter_record_batch(&data, &keep).map_err(arrow)?;
        let mut split = Split { kept: (kept.num_rows() > 0).then_some(kept), quarantined: None };
        if to_quarantine.true_count() > 0 {
            let mut names = ListBuilder::new(StringBuilder::new());
            for row in 0..rows {
                for ((name, _, _), bad) in self.rules.iter().zip(&failed) {
                    if bad.value(row) {
                        names.values().append_value(name);
                    }
                }
                names.append(true);
            }
            let mut columns: Vec<ArrayRef> = data.columns().to_vec();
            columns.push(Arc::new(names.finish()));
            let all = RecordBatch::try_new(self.quarantine.clone(), columns).map_err(arrow)?;
            let quarantined = filter_record_batch(&all, &to_quarantine).map_err(arrow)?;
            self.quarantined += quarantined.num_rows() as u64;
            split.quarantined = Some(quarantined);
        }
        Ok(split)
    }

    /// The counts, or the error of the first `fail` expectation that was violated.
    pub(crate) fn finish(&self) -> Result<Vec<Counted>, Error> {
        for ((name, check, on), count) in self.rules.iter().zip(&self.counts) {
            if *on == OnViolation::Fail && *count > 0 {
                return Err(Error::Expectation {
                    name: name.clone(),
                    check: check.clone(),
                    message: format!(
                        "{count} row(s) violate it and it is set to `fail`; nothing was committed"
                    ),
                });
            }
        }
        Ok(self
            .rules
            .iter()
            .zip(&self.counts)
            .map(|((name, check, on), count)| Counted {
                name: name.clone(),
                action: action(*on),
                check: check.clone(),
                violations: *count,
            })
            .collect())
    }

    pub(crate) fn quarantined_rows(&self) -> u64 {
        self.quarantined
    }
}
