//! Placeholder until this source is built.

use switchyard_config::manifest::HttpsSource as Spec;
use switchyard_lake::TableWriter;

use crate::chunk::{Chunk, Source};
use crate::{Context, Error, Limits};

#[derive(Debug)]
pub struct HttpsSource;

impl HttpsSource {
    pub async fn open(
        _spec: &Spec,
        _ctx: &Context,
        _writer: &TableWriter,
        _mode: switchyard_lake::WriteMode,
        _limits: Limits,
    ) -> Result<Self, Error> {
        Err(Error::config("this source is not built yet", "use a `run` task for now"))
    }
}

impl Source for HttpsSource {
    fn name(&self) -> String {
        "https".into()
    }

    async fn next(&mut self) -> Result<Option<Chunk>, Error> {
        Ok(None)
    }
}
