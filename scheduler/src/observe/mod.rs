//! What the control plane tells the outside on its own: alert webhooks for failing health
//! checks ([`alerts`]) and the export of the event log to a Delta table or a file sink
//! ([`export`]). Both run as background loops beside the API, read through [`crate::views`]
//! and the store, and keep their own progress (notifications sent, the export cursor) in the
//! store so that a restarted or second replica carries on where the first stopped.

pub mod alerts;
pub mod export;
