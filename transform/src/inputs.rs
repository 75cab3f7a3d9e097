//! The tables a query reads, found by DataFusion's own resolver (so CTE names and aliases are
//! handled exactly as the query runs), and their registration as Delta table providers at the
//! versions the run reads — all files, or only the files an incremental run processes.

use std::sync::Arc;

use deltalake::datafusion::catalog::MemorySchemaProvider;
use deltalake::datafusion::common::TableReference;
use deltalake::datafusion::common::config::Dialect;
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::prelude::SessionContext;
use switchyard_config::value::TableName;
use switchyard_lake::deltalake;

use crate::Error;

/// The lake tables `sql` reads, in order of first appearance.
pub(crate) fn referenced(ctx: &SessionContext, sql: &str) -> Result<Vec<TableName>, Error> {
    let state = ctx.state();
    let statement = state.sql_to_statement(sql, &Dialect::Generic).map_err(Error::query)?;
    let references = state.resolve_table_references(&statement).map_err(Error::query)?;
    let mut tables: Vec<TableName> = Vec::new();
    for r in references {
        let name = match &r {
            TableReference::Bare { table } => {
                outside_lake(table)?;
                return Err(Error::BadTableName {
                    name: table.to_string(),
                    why: "it has no schema part".into(),
                });
            }
            TableReference::Partial { schema, table } => {
                outside_lake(schema)?;
                outside_lake(table)?;
                format!("{schema}.{table}")
            }
            TableReference::Full { .. } => {
                return Err(Error::BadTableName {
                    name: r.to_string(),
                    why: "catalog-qualified names are not lake tables".into(),
                });
            }
        };
        let table: TableName = name.parse().map_err(|e: switchyard_config::value::ParseError| {
            Error::BadTableName { name, why: e.to_string() }
        })?;
        if !tables.contains(&table) {
            tables.push(table);
        }
    }
    Ok(tables)
}

/// Refuses URLs and file paths where a table name belongs.
fn outside_lake(part: &str) -> Result<(), Error> {
    if part.contains("://") {
        return Err(Error::OutsideLake { target: part.to_owned(), url: true });
    }
    if part.contains('/') || part.contains('\\') {
        return Err(Error::OutsideLake { target: part.to_owned(), url: false });
    }
    Ok(())
}

/// Registers `delta` (the table at the version the run reads) under its `schema.table` name;
/// with `files`, only those of the version's data files are read.
pub(crate) async fn register(
    ctx: &SessionContext,
    table: &TableName,
    delta: &deltalake::DeltaTable,
    files: Option<&[String]>,
) -> Result<(), Error> {
    let state = ctx.state();
    delta.update_datafusion_session(&state).map_err(|cause| lake_error(table, cause))?;
    let mut builder = delta.table_provider().with_session(Arc::new(state));
    if let Some(files) = files {
        builder = builder.with_file_paths(files.iter().cloned());
    }
    let provider: Arc<dyn TableProvider> = builder.await.map_err(Error::query)?;
    register_as(ctx, table, provider)
}

/// Puts `provider` under `table`'s `schema.table` name, replacing an earlier registration (an
/// incremental run re-registers an input with only its new files).
pub(crate) fn register_as(
    ctx: &SessionContext,
    table: &TableName,
    provider: Arc<dyn TableProvider>,
) -> Result<(), Error> {
    let (schema, name) = table.as_str().split_once('.').unwrap_or(("default", table.as_str()));
    let catalog = ctx.catalog("datafusion").ok_or_else(|| Error::internal("no default catalog"))?;
    if catalog.schema(schema).is_none() {
        catalog
            .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
            .map_err(|e| Error::internal(e.to_string()))?;
    }
    let reference = TableReference::partial(schema, name);
    let _ = ctx.deregister_table(reference.clone());
    ctx.register_table(reference, provider).map_err(|e| Error::internal(e.to_string()))?;
    Ok(())
}

fn lake_error(table: &TableName, cause: deltalake::DeltaTableError) -> Error {
    Error::Lake(Box::new(switchyard_lake::Error::Delta { table: table.to_string(), cause }))
}
