//! Whether a query's result over "old rows + new rows" can be computed from its result over the
//! new rows alone — the condition for an incremental refresh. Decided on DataFusion's
//! (unoptimized) logical plan, so it sees exactly what the SQL means, aliases and all.

use deltalake::datafusion::logical_expr::{Expr, LogicalPlan};
use switchyard_lake::deltalake;

/// How a query's output for new input rows combines with the output already written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Projections and filters over one table: new rows map to new output rows, so the output
    /// for the new files is appended (or merged on keys).
    RowWise { table: String },
    /// `GROUP BY` over projections and filters of one table, with only `sum`, `count`, `min`
    /// and `max`: the increment's groups are merged into the previous output column by column.
    Aggregate { table: String, columns: Vec<Combine> },
    /// Anything else (joins, windows, DISTINCT, sorting, limits, averages…): recompute fully.
    Other { why: String },
}

/// How one output column of a mergeable aggregate combines the previous and the new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Combine {
    /// A grouping key.
    Key(String),
    /// `sum` and `count`: add.
    Add(String),
    /// `min`: the smaller.
    Least(String),
    /// `max`: the larger.
    Greatest(String),
}

impl Combine {
    pub(crate) fn name(&self) -> &str {
        match self {
            Combine::Key(n) | Combine::Add(n) | Combine::Least(n) | Combine::Greatest(n) => n,
        }
    }
}

pub(crate) fn shape(plan: &LogicalPlan) -> Shape {
    let mut node = plan;
    // Output projections and aliases above an aggregate.
    let mut projection: Option<&Vec<Expr>> = None;
    loop {
        match node {
            LogicalPlan::Projection(p) => {
                if let LogicalPlan::Aggregate(_) = p.input.as_ref() {
                    projection = Some(&p.expr);
                }
                node = &p.input;
            }
            LogicalPlan::SubqueryAlias(s) => node = &s.input,
            LogicalPlan::Filter(f) => {
                if let LogicalPlan::Aggregate(_) = f.input.as_ref() {
                    return other("it filters groups after aggregating (HAVING)");
                }
                node = &f.input;
            }
            LogicalPlan::Aggregate(a) => {
                let Some(table) = single_scan(&a.input) else {
                    return other("its aggregate reads more than one table or a non-row-wise input");
                };
                return aggregate(a, projection, table);
            }
            LogicalPlan::TableScan(t) => return Shape::RowWise { table: t.table_name.to_string() },
            other_node => return other(&format!("it uses {}", describe(other_node))),
        }
    }
}

fn other(why: &str) -> Shape {
    Shape::Other { why: format!("the query cannot be refreshed incrementally: {why}") }
}

/// The table a chain of projections and filters reads, if that is all the input is.
fn single_scan(plan: &LogicalPlan) -> Option<String> {
    match plan {
        LogicalPlan::Projection(p) => single_scan(&p.input),
        LogicalPlan::Filter(f) => single_scan(&f.input),
        LogicalPlan::SubqueryAlias(s) => single_scan(&s.input),
        LogicalPlan::TableScan(t) => Some(t.table_name.to_string()),
        _ => None,
    }
}

fn aggregate(
    a: &deltalake::datafusion::logical_expr::Aggregate,
    projection: Option<&Vec<Expr>>,
    table: String,
) -> Shape {
    let groups = a.group_expr.len();
    if groups == 0 {
        return other("it aggregates without GROUP BY");
    }
    // What each aggregate output column is.
    let mut kinds: Vec<Option<Kind>> = Vec::with_capacity(a.schema.fields().len());
    kinds.extend(std::iter::repeat_n(Some(Kind::Key), groups));
    for e in &a.aggr_expr {
        let inner = match e {
            Expr::Alias(alias) => alias.expr.as_ref(),
            e => e,
        };
        let Expr::AggregateFunction(f) = inner else { return other("it has an unusual aggregate") };
        let p = &f.params;
        if p.distinct || p.filter.is_some() || !p.order_by.is_empty() {
            return other(&format!("`{}` uses DISTINCT, FILTER or ORDER BY", f.func.name()));
        }
        let kind = match f.func.name().to_ascii_lowercase().as_str() {
            "sum" | "count" => Kind::Add,
            "min" => Kind::Least,
            "max" => Kind::Greatest,
            name => {
                return other(&format!(
                    "`{name}` cannot be merged from partial results (only sum, count, min and max can)"
                ));
            }
        };
        kinds.push(Some(kind));
    }
    let field_name = |i: usize| a.schema.field(i).name().clone();
    let columns = match projection {
        None => kinds
            .iter()
            .enumerate()
            .map(|(i, k)| k.map(|k| k.with(field_name(i))))
            .collect::<Option<Vec<_>>>(),
        Some(exprs) => {
            let mut out = Vec::with_capacity(exprs.len());
            for e in exprs {
                // The outermost alias names the column; `count(*)` adds one of its own inside.
                let mut inner = e;
                while let Expr::Alias(alias) = inner {
                    inner = alias.expr.as_ref();
                }
                let Expr::Column(column) = inner else {
                    return other("its output computes on aggregated values (e.g. sum(a) / count(*))");
                };
                let name = match e {
                    Expr::Alias(alias) => alias.name.clone(),
                    _ => column.name.clone(),
                };
                let Ok(i) = a.schema.index_of_column(column) else {
                    return other("its output names a column the aggregate does not produce");
                };
                let Some(kind) = kinds.get(i).copied().flatten() else {
                    return other("its output names a column the aggregate does not produce");
                };
                out.push(kind.with(name));
            }
            Some(out)
        }
    };
    match columns {
        Some(columns) if columns.iter().any(|c| matches!(c, Combine::Key(_))) => {
            Shape::Aggregate { table, columns }
        }
        Some(_) => other("its output leaves out the grouping keys, so groups cannot be matched"),
        None => other("it has an unusual aggregate"),
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Key,
    Add,
    Least,
    Greatest,
}

impl Kind {
    fn with(self, name: String) -> Combine {
        match self {
            Kind::Key => Combine::Key(name),
            Kind::Add => Combine::Add(name),
            Kind::Least => Combine::Least(name),
            Kind::Greatest => Combine::Greatest(name),
        }
    }
}

fn describe(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Join(_) => "a join",
        LogicalPlan::Union(_) => "a UNION",
        LogicalPlan::Window(_) => "window functions",
        LogicalPlan::Distinct(_) => "DISTINCT",
        LogicalPlan::Sort(_) => "ORDER BY",
        LogicalPlan::Limit(_) => "LIMIT",
        LogicalPlan::Subquery(_) => "a subquery",
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => "literal rows",
        _ => "an operation other than projections, filters and GROUP BY",
    }
}
