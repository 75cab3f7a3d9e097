//! Checks of `[alerts]`: a usable evaluation interval and re-arm time, and webhooks that say where
//! their URL comes from exactly once.

use super::Alerts;
use crate::diagnostic::{Code, Diagnostic};
use crate::document::{Document, Seg};

pub(crate) fn check_alerts(doc: &Document, alerts: &Alerts, out: &mut Vec<Diagnostic>) {
    if alerts.interval.as_std() < std::time::Duration::from_secs(1) {
        out.push(
            doc.error(
                Code::Schema,
                &[Seg::Key("alerts"), Seg::Key("interval")],
                format!("alerts.interval {} is too short", alerts.interval),
            )
            .with_hint("health is read from the state store each time; use at least 1s (30s is the default)"),
        );
    }
    if alerts.rearm.as_std().is_zero() {
        out.push(
            doc.error(Code::Schema, &[Seg::Key("alerts"), Seg::Key("rearm")], "alerts.rearm is zero")
                .with_hint("set how long to wait before repeating an alert that stays bad, e.g. `1h`"),
        );
    }
    for (i, hook) in alerts.webhooks.iter().enumerate() {
        let at = |key: &'static str| [Seg::Key("alerts"), Seg::Key("webhooks"), Seg::Index(i), Seg::Key(key)];
        let given: Vec<&str> = [
            ("url", hook.url.is_some()),
            ("url_env", hook.url_env.is_some()),
            ("url_file", hook.url_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        match given.as_slice() {
            [] => out.push(
                doc.error(
                    Code::Schema,
                    &[Seg::Key("alerts"), Seg::Key("webhooks"), Seg::Index(i)],
                    "the webhook has no URL",
                )
                .with_hint("set `url_env = \"VAR\"` or `url_file = \"PATH\"` (a webhook URL is usually a secret), or `url`"),
            ),
            [_] => {}
            [_, second, ..] => out.push(
                doc.error(
                    Code::Schema,
                    &at(second),
                    format!("the webhook sets both `{}` and `{second}`", given[0]),
                )
                .with_hint("keep one of url, url_env and url_file"),
            ),
        }
        if let Some(url) = &hook.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                out.push(
                    doc.error(Code::Schema, &at("url"), "the webhook URL is not http:// or https://")
                        .with_hint("write the receiver's full URL, e.g. https://hooks.slack.com/services/…"),
                );
            }
        }
        if let Some(var) = &hook.url_env {
            if var.is_empty() || var.contains('=') {
                out.push(
                    doc.error(
                        Code::Schema,
                        &at("url_env"),
                        format!("`{var}` is not an environment variable name"),
                    )
                    .with_hint("name the variable that holds the URL, e.g. SLACK_WEBHOOK_URL"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::settings::WebhookFormat;
    use crate::{LoadOptions, load};

    fn load_toml(toml: &str) -> crate::Inputs {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("switchyard.toml");
        std::fs::write(&file, toml).unwrap();
        let egress = dir.path().join("egress.yaml");
        std::fs::write(&egress, "destinations: []\n").unwrap();
        let options = LoadOptions {
            paths: vec![],
            settings: Some(file),
            egress: Some(egress),
            env: Some(BTreeMap::new()),
            inline: vec![],
        };
        load(&options).unwrap()
    }

    #[test]
    fn alert_settings_are_read_with_defaults() {
        let inputs = load_toml(
            "[alerts]\nrearm = \"10m\"\n[[alerts.webhooks]]\nurl_env = \"SLACK_URL\"\nformat = \"slack\"\n[[alerts.webhooks]]\nurl = \"http://127.0.0.1:9/hook\"\n",
        );
        assert!(inputs.diagnostics.is_empty(), "{:?}", inputs.diagnostics);
        let alerts = &inputs.settings.settings.alerts;
        assert_eq!(alerts.rearm.as_std().as_secs(), 600);
        assert_eq!(alerts.interval.as_std().as_secs(), 30);
        assert_eq!(alerts.webhooks[0].format, WebhookFormat::Slack);
        assert_eq!(alerts.webhooks[1].format, WebhookFormat::Json);
    }

    #[test]
    fn alert_settings_errors_point_at_the_webhook() {
        let inputs = load_toml(
            "[alerts]\ninterval = \"10ms\"\nrearm = \"0s\"\n[[alerts.webhooks]]\nformat = \"json\"\n[[alerts.webhooks]]\nurl = \"ftp://x\"\nurl_env = \"X\"\n",
        );
        let found: Vec<(String, String)> =
            inputs.diagnostics.iter().map(|d| (d.path.clone(), d.message.clone())).collect();
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "alerts.interval",
                "alerts.rearm",
                "alerts.webhooks[0]",
                "alerts.webhooks[1].url",
                "alerts.webhooks[1].url_env"
            ],
            "{found:?}"
        );
        let bad = load_toml("[alerts]\n[[alerts.webhooks]]\nurl = \"http://x\"\nformat = \"teams\"\n");
        assert_eq!(bad.diagnostics.len(), 1, "{:?}", bad.diagnostics);
        assert!(bad.diagnostics[0].message.contains("teams"), "{:?}", bad.diagnostics);
    }
}
