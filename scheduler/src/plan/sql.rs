//! What a transform's SQL reads, found with a real SQL parser (sqlparser, the parser DataFusion
//! uses), and positions inside the SQL mapped back to the manifest.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{ObjectNamePart, Query, Statement, Visit, Visitor};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::{Parser, ParserError};
use switchyard_config::{Document, Location, Seg};

/// A table the SQL reads, with its 1-based position inside the SQL text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableRef {
    /// Lower-cased, dot-joined name, as lake table names are compared.
    pub(crate) name: String,
    pub(crate) line: u64,
    pub(crate) column: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqlProblem {
    pub(crate) message: String,
    pub(crate) hint: String,
    /// Position inside the SQL text, when the parser gave one.
    pub(crate) at: Option<(u64, u64)>,
}

/// The tables a transform's query reads (CTE names excluded), in order of first appearance.
pub(crate) fn tables_read(sql: &str) -> Result<Vec<TableRef>, SqlProblem> {
    let statements = Parser::parse_sql(&GenericDialect {}, sql).map_err(|e| parse_problem(&e, sql))?;
    let [statement] = statements.as_slice() else {
        return Err(SqlProblem {
            message: format!("`sql` holds {} statements; a transform is one query", statements.len()),
            hint: "write a single SELECT (use WITH … for intermediate steps); the sink says where it goes"
                .into(),
            at: None,
        });
    };
    let Statement::Query(query) = statement else {
        return Err(SqlProblem {
            message: "`sql` is not a query".into(),
            hint:
                "write a SELECT; Switchyard writes its result to the sink table (append, overwrite or merge)"
                    .into(),
            at: None,
        });
    };
    let mut collector = Collector::default();
    let _ = query.visit(&mut collector);
    let mut seen = HashSet::new();
    Ok(collector
        .relations
        .into_iter()
        .filter(|t| !(collector.ctes.contains(&t.name)))
        .filter(|t| seen.insert(t.name.clone()))
        .collect())
}

/// Checks that an expectation is a valid SQL expression.
pub(crate) fn check_expression(expr: &str) -> Result<(), SqlProblem> {
    let mut parser =
        Parser::new(&GenericDialect {}).try_with_sql(expr).map_err(|e| parse_problem(&e, expr))?;
    parser.parse_expr().map_err(|e| parse_problem(&e, expr))?;
    match parser.peek_token().token {
        sqlparser::tokenizer::Token::EOF => Ok(()),
        other => Err(SqlProblem {
            message: format!("unexpected `{other}` after the expression"),
            hint: "an expectation is one boolean expression, e.g. `amount >= 0 AND member_id IS NOT NULL`"
                .into(),
            at: None,
        }),
    }
}

#[derive(Default)]
struct Collector {
    relations: Vec<TableRef>,
    ctes: HashSet<String>,
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &sqlparser::ast::ObjectName) -> ControlFlow<()> {
        let mut parts = Vec::new();
        let mut start = None;
        for part in &relation.0 {
            if let ObjectNamePart::Identifier(ident) = part {
                start.get_or_insert((ident.span.start.line, ident.span.start.column));
                parts.push(if ident.quote_style.is_some() {
                    ident.value.clone()
                } else {
                    ident.value.to_lowercase()
                });
            }
        }
        let (line, column) = start.unwrap_or((0, 0));
        self.relations.push(TableRef { name: parts.join("."), line, column });
        ControlFlow::Continue(())
    }
}

/// sqlparser reports positions as "… at Line: L, Column: C"; keep the message, lift the position.
/// An error at the end of input has no position from the parser; it is at the end of the text.
fn parse_problem(err: &ParserError, sql: &str) -> SqlProblem {
    let text = match err {
        ParserError::TokenizerError(s) | ParserError::ParserError(s) => s.clone(),
        ParserError::RecursionLimitExceeded => "the query nests too deeply".to_owned(),
    };
    let (message, at) = match text.rsplit_once(" at Line: ") {
        Some((msg, pos)) => {
            let mut nums = pos.split(", Column: ").map(|n| n.trim().parse::<u64>().ok());
            match (nums.next().flatten(), nums.next().flatten()) {
                (Some(l), Some(c)) => (msg.to_owned(), Some((l, c))),
                _ => (text.clone(), None),
            }
        }
        None => (text.clone(), None),
    };
    let at = at.or_else(|| {
        message.ends_with("found: EOF").then(|| {
            let trimmed = sql.trim_end();
            let line = trimmed.lines().count().max(1) as u64;
            let column = trimmed.lines().last().map_or(0, |l| l.chars().count()) as u64 + 1;
            (line, column)
        })
    });
    SqlProblem {
        message: format!("invalid SQL: {message}"),
        hint: "check the SQL near this position; it is parsed as ANSI SQL (DataFusion's dialect)".into(),
        at,
    }
}

/// Maps a 1-based position inside the SQL scalar at `path` to a file position. yaml-rust2 marks a
/// block scalar (`|`, `>`) where its content starts, so a value with only indentation before it on
/// its line is block content, indented like its first line; anything else is inline.
pub(crate) fn file_position(doc: &Document, path: &[Seg<'_>], at: Option<(u64, u64)>) -> Location {
    let start = doc.locate(path);
    let Some((line, column)) = at.filter(|(l, c)| *l > 0 && *c > 0) else {
        return start;
    };
    let (line, column) = (line as u32, column as u32);
    let source_line = doc.line(start.line).unwrap_or("");
    let before: String = source_line.chars().take((start.column as usize).saturating_sub(1)).collect();
    if before.trim().is_empty() {
        return Location::new(start.line + line - 1, start.column.saturating_sub(1) + column);
    }
    if line == 1 {
        let first = source_line.chars().nth((start.column as usize).saturating_sub(1));
        let quoted = matches!(first, Some('"' | '\''));
        return Location::new(start.line, (start.column + column).saturating_sub(1) + u32::from(quoted));
    }
    Location::new(start.line + line - 1, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<String> {
        tables_read(sql).unwrap().into_iter().map(|t| t.name).collect()
    }

    #[test]
    fn finds_tables_in_joins_subqueries_and_unions_but_not_ctes() {
        assert_eq!(
            names("SELECT * FROM Bronze.Claims c JOIN bronze.eligibility e ON c.id = e.id"),
            ["bronze.claims", "bronze.eligibility"]
        );
        assert_eq!(
            names(
                "WITH recent AS (SELECT * FROM silver.claims WHERE d > 1) \
                 SELECT * FROM recent WHERE id IN (SELECT id FROM gold.flags) UNION ALL SELECT * FROM recent"
            ),
            ["silver.claims", "gold.flags"]
        );
    }

    #[test]
    fn reports_positions_and_non_queries() {
        let err = tables_read("SELECT a\nFROM t WHERE").unwrap_err();
        assert!(err.at.is_some(), "{err:?}");
        assert!(tables_read("DELETE FROM t").unwrap_err().message.contains("not a query"));
        assert!(tables_read("SELECT 1; SELECT 2").unwrap_err().message.contains("2 statements"));
        assert_eq!(tables_read("SELECT * FROM t").unwrap()[0].column, 15);
    }

    #[test]
    fn checks_expectation_expressions() {
        assert!(check_expression("amount >= 0 AND member_id IS NOT NULL").is_ok());
        assert!(check_expression("amount >=").is_err());
        assert!(check_expression("amount > 0 extra").is_err());
    }
}
