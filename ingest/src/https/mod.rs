//! A partner HTTPS API as a source: pages fetched one after another over one kept-alive
//! connection from the gateway (its policy, static source IP and the rule's client identity),
//! decoded to Arrow, and committed in chunks of whole pages.
//!
//! Exactly once: every commit carries the number of the last page it holds under the app id
//! `<task app id>/run-<run>`. A retried attempt of the same run reads that number back and
//! fetches the pages again from the start (a cursor or next link can only be followed, not
//! jumped to; numbered pages are asked for directly) without emitting the rows of pages already
//! committed. The run id in the app id makes the next run start again from page 1. An `overwrite`
//! sink commits once, after the last page, so the table never holds a partial overwrite.
//!
//! - [`paging`]: which URL comes next (cursor, next link, page number);
//! - [`fetch`]: the request, `Retry-After`, backoff and classification of answers;
//! - [`client`]: the connection through the gateway;
//! - [`page`]: a body to records and Arrow.

mod client;
mod fetch;
mod page;
mod paging;
mod retry;

use switchyard_config::manifest::{HttpsSource as Spec, PageFormat};
use switchyard_config::value::HttpUrl;
use switchyard_gateway::dial::Target;
use switchyard_lake::arrow::datatypes::SchemaRef;
use switchyard_lake::arrow::record_batch::RecordBatch;
use switchyard_lake::{Position, TableWriter, WriteMode};

use crate::chunk::{Chunk, Source};
use crate::flush::Fill;
use crate::{Context, Error, Limits, json};
use client::Client;
use fetch::{Template, What, fetch};
use page::Page;
use paging::{Pager, Paging};

/// Reads an HTTPS API page by page.
pub struct HttpsSource {
    name: String,
    /// The task's URL, where paging starts.
    base: HttpUrl,
    client: Client,
    template: Template,
    pager: Pager,
    format: PageFormat,
    records: Option<String>,
    next_field: Option<String>,
    /// Declared, else the existing table's, else inferred from the first page with records.
    schema: Option<SchemaRef>,
    app_id: String,
    /// The last page an earlier attempt of this run committed (0: none).
    committed: i64,
    /// Commit only after the last page (see the module comment).
    overwrite: bool,
    limits: Limits,
    fill: Fill,
    /// Rows were handed out since the last commit point.
    pending: bool,
    done: bool,
}

impl std::fmt::Debug for HttpsSource {
    // Not derived: the request template holds the bearer token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsSource").field("name", &self.name).field("app_id", &self.app_id).finish()
    }
}

impl HttpsSource {
    pub async fn open(
        spec: &Spec,
        ctx: &Context,
        writer: &TableWriter,
        mode: WriteMode,
        limits: Limits,
    ) -> Result<Self, Error> {
        let url = &spec.url;
        let name = format!("https {}{}", url.endpoint(), url.as_url().path());
        let format = spec.format.unwrap_or(PageFormat::Json);
        if format == PageFormat::Ndjson && spec.records.is_some() {
            return Err(Error::config(
                format!("{name}: `records` is set for NDJSON pages, whose records are their lines"),
                "remove `records`, or set `format: json` if the API answers a JSON document",
            ));
        }
        let tls = url.as_url().scheme() == "https";
        if !tls && spec.identity.is_some() {
            return Err(Error::config(
                format!(
                    "{name}: the task names client identity `{}` for a plain http:// URL",
                    spec.identity.as_deref().unwrap_or("")
                ),
                "use an https:// URL: a client certificate is presented only over TLS",
            ));
        }
        let paging = Paging::from_spec(spec.pagination.as_ref(), format)?;
        let template = Template::new(spec)?;
        let app_id = format!("{}/run-{}", ctx.app_id(), ctx.run);
        let committed = writer.position(&app_id).await?.unwrap_or(0);
        let overwrite = mode == WriteMode::Overwrite;
        // Numbered pages can be asked for directly; a cursor chain must be walked from the start.
        let first = if matches!(paging, Paging::Number { .. }) { committed + 1 } else { 1 };
        let next_field = paging.next_field().map(str::to_owned);
        let pager = Pager::new(paging, url.clone(), first)?;
        // An overwrite commits once, at the end: a position means this run's load is complete.
        let done = overwrite && committed > 0;
        if committed > 0 {
            tracing::info!(source = %name, app_id = %app_id, page = committed, complete = done, "Resuming after the pages an earlier attempt of this run committed.");
        }
        let mut target = Target::new(url.endpoint().host.clone(), url.endpoint().port);
        target.task = Some(format!("{}/{}", ctx.job, ctx.task));
        Ok(HttpsSource {
            client: Client::new(name.clone(), ctx.dialer.clone(), target, tls, spec.identity.clone()),
            template,
            pager,
            format,
            records: spec.records.clone(),
            next_field,
            // Declared, else the table's (a retry or the next run decodes exactly as the table
            // holds it), else inferred from the first page with records.
            schema: if spec.schema.is_empty() { writer.schema() } else { Some(json::declared(&spec.schema)) },
            app_id,
            committed,
            overwrite,
            limits,
            fill: Fill::new(),
            pending: false,
            done,
            base: url.clone(),
            name,
        })
    }

    fn position(&self, page: i64) -> Vec<Position> {
        vec![Position { app_id: self.app_id.clone(), version: page }]
    }

    /// The page's rows, in the source's schema (inferred from this page if there is none yet).
    fn decode(&mut self, page: &Page, number: i64, url: &HttpUrl) -> Result<Option<RecordBatch>, Error> {
        if page.len() == 0 {
            return Ok(None);
        }
        if self.schema.is_none() {
            self.schema = page.infer().map_err(|why| self.undecodable(number, url, why))?;
        }
        let Some(schema) = &self.schema else { return Ok(None) };
        page.decode(schema).map(Some).map_err(|why| self.undecodable(number, url, why))
    }

    fn unfollowable(&self, number: i64, why: String) -> Error {
        Error::data(
            &self.name,
            format!("after page {number}: {why}"),
            "check that `pagination` names the field the API puts its cursor or next link in; \
             a next link to another host needs a task (and an egress rule) of its own",
        )
    }

    fn undecodable(&self, number: i64, url: &HttpUrl, why: String) -> Error {
        Error::data(
            &self.name,
            format!("{}: {why}", What { source: &self.name, base: &self.base, url, page: number }.describe()),
            "check that the task's `format`, `records` and `pagination` match what the API answers; \
             declare `schema` if pages disagree on a field's type",
        )
    }
}

impl Source for HttpsSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn next(&mut self) -> Result<Option<Chunk>, Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            // The last page carried the last commit point (see below).
            let Some((number, url)) = self.pager.current() else { return Ok(None) };
            let url = url.clone();
            let what = What { source: &self.name, base: &self.base, url: &url, page: number };
            let body = fetch(&mut self.client, &self.template, what).await?;
            let bytes = body.len() as u64;
            let page = Page::parse(body, self.format, self.records.as_deref(), self.next_field.as_deref())
                .map_err(|why| self.undecodable(number, &url, why))?;
            self.pager
                .advance(page.next.as_deref(), page.len())
                .map_err(|why| self.unfollowable(number, why))?;
            if number <= self.committed {
                tracing::debug!(source = %self.name, page = number, "Page committed by an earlier attempt; not emitted again.");
                continue;
            }
            let batch = self.decode(&page, number, &url)?;
            let rows = batch.as_ref().map_or(0, |b| b.num_rows() as u64);
            tracing::debug!(source = %self.name, page = number, rows, bytes, "Fetched a page.");
            self.fill.add(rows, bytes);
            self.pending |= rows > 0;
            let last_page = self.pager.current().is_none();
            let commit = self.pending && (last_page || (!self.overwrite && self.fill.full(&self.limits)));
            if last_page {
                self.done = true;
            }
            if batch.is_none() && !commit {
                continue;
            }
            let positions = if commit {
                self.fill = Fill::new();
                self.pending = false;
                self.position(number)
            } else {
                Vec::new()
            };
            return Ok(Some(Chunk { batches: batch.into_iter().collect(), positions, dead_letters: None }));
        }
    }
}
