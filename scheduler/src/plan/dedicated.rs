//! Placing one dedicated task and explaining the choice.

use switchyard_config::manifest::{LoadedManifest, Source, Task};
use switchyard_config::{Code, Diagnostic, Seg};

use super::classify::Needs;
use super::placement::{Outcome, place};
use super::{Context, TaskPlan};

impl Context<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn place_task(
        &self,
        m: &LoadedManifest,
        t: usize,
        task: &Task,
        needs: &Needs,
        plan: &mut TaskPlan,
        reasons: &mut Vec<String>,
        out: &mut Vec<Diagnostic>,
    ) {
        let doc = &m.doc;
        let base = m.task_path(t);
        let settings = &self.inputs.settings.settings;
        let policy = &self.inputs.policy.policy;
        if let Some(group) = &needs.session {
            reasons.push(format!("consumer group {group} keeps its membership on one healthy node"));
        }
        if !self.can_place {
            reasons.insert(0, "not placed: fix the settings or egress policy errors first".to_owned());
            return;
        }
        if let Some(identity) = &needs.identity
            && !settings.identities.contains_key(identity)
        {
            let known = settings.identities.keys().map(String::as_str);
            out.push(
                    doc.error(Code::UnknownIdentity, &[base[0], base[1], Seg::Key("source"), Seg::Key("identity")], format!("identity `{identity}` is not defined in the settings"))
                        .with_hint(format!(
                            "{}define `[identities.{identity}]` (cert, key, ca) in the settings and install it on a pool",
                            switchyard_config::suggest::did_you_mean(identity, known)
                        )),
                );
            reasons.insert(0, format!("not placed: unknown identity {identity}"));
            return;
        }
        let Ok(pinned) = self.pinned_pool(m, t, task, reasons, out) else { return };
        let (outcome, rules) = place(
            &needs.destinations,
            needs.identity.as_deref(),
            pinned,
            settings,
            &self.pools_by_ip,
            policy,
            self.index,
        );
        let mut rule_reasons: Vec<String> = Vec::new();
        for rule in &rules.matched {
            let ips: Vec<String> = rule.egress_ips.iter().map(ToString::to_string).collect();
            let text = match ips.as_slice() {
                [one] => format!("destination {} allows only {one}", rule.name),
                _ => format!("destination {} allows {}", rule.name, ips.join(", ")),
            };
            if !rule_reasons.contains(&text) {
                rule_reasons.push(text);
            }
        }
        match outcome {
            Outcome::Placed { pool, egress_ips, also_eligible } => {
                for identity in &rules.identities {
                    rule_reasons.push(format!("needs identity {identity}, installed on pool {pool}"));
                }
                let ips: Vec<String> = egress_ips.iter().map(ToString::to_string).collect();
                rule_reasons.push(match pinned {
                    Some(_) => format!("pinned to pool {pool}, which has {}", ips.join(", ")),
                    None => format!("pool {pool} has {}", ips.join(", ")),
                });
                if !also_eligible.is_empty() {
                    rule_reasons.push(format!("also eligible: {}", also_eligible.join(", ")));
                }
                plan.eligible_pools = std::iter::once(pool.clone()).chain(also_eligible).collect();
                plan.pool = Some(pool);
                plan.egress_ips = egress_ips;
            }
            Outcome::NoRule(missing) => {
                for i in missing {
                    let endpoint = &needs.destinations[i];
                    out.push(
                        doc.error(Code::NoEgressRule, &destination_path(base, task, i), format!("no egress rule allows {endpoint}"))
                            .with_hint(format!(
                                "ask the operator to add a destination for host {} port {} to the egress policy, or check the host and port for typos",
                                endpoint.host, endpoint.port
                            )),
                    );
                }
                rule_reasons.insert(0, "not placed: a destination has no egress rule".to_owned());
            }
            Outcome::Unplaceable { why, hint } => {
                let path: Vec<Seg<'_>> = if task.run.is_some() {
                    vec![base[0], base[1], Seg::Key("run"), Seg::Key("destinations")]
                } else {
                    vec![base[0], base[1], Seg::Key("source")]
                };
                out.push(
                    doc.error(
                        Code::Unplaceable,
                        &path,
                        format!("task `{}` cannot be placed: {why}", task.name),
                    )
                    .with_hint(hint),
                );
                rule_reasons.insert(0, "not placed: no pool qualifies".to_owned());
            }
        }
        let inferred = reasons.iter().position(|r| r.starts_with("class inferred"));
        let tail: Vec<String> = match inferred {
            Some(i) => vec![reasons.remove(i)],
            None => vec![],
        };
        let session: Vec<String> = std::mem::take(reasons);
        reasons.extend(rule_reasons);
        reasons.extend(session);
        reasons.extend(tail);
    }
}

impl Context<'_> {
    /// A task that reaches only the lake but declares `compute: dedicated`: any pool qualifies
    /// (no destination restricts the egress IP), or the pinned one. It gets no egress there.
    pub(super) fn place_without_destinations(
        &self,
        m: &LoadedManifest,
        t: usize,
        task: &Task,
        plan: &mut TaskPlan,
        reasons: &mut Vec<String>,
        out: &mut Vec<Diagnostic>,
    ) {
        reasons.insert(
            0,
            "compute: dedicated in the manifest; it reaches only the lake, so it gets no egress on the node"
                .to_owned(),
        );
        if !self.can_place {
            reasons.insert(0, "not placed: fix the settings or egress policy errors first".to_owned());
            return;
        }
        let Ok(pinned) = self.pinned_pool(m, t, task, reasons, out) else { return };
        let settings = &self.inputs.settings.settings;
        let pools: Vec<&switchyard_config::settings::Pool> = match pinned {
            Some(pool) => vec![pool],
            None => settings.pools.iter().collect(),
        };
        let Some(first) = pools.first() else {
            let base = m.task_path(t);
            out.push(
                m.doc
                    .error(
                        Code::Unplaceable,
                        &[base[0], base[1], Seg::Key("compute")],
                        format!(
                            "task `{}` declares `compute: dedicated` but the settings define no pools",
                            task.name
                        ),
                    )
                    .with_hint("add a `[[pools]]` entry to the settings, or remove `compute: dedicated`"),
            );
            reasons.insert(0, "not placed: no pools".to_owned());
            return;
        };
        let ips: Vec<String> = first.egress_ips.iter().map(ToString::to_string).collect();
        reasons.push(match pinned {
            Some(_) => format!("pinned to pool {}, which has {}", first.name, ips.join(", ")),
            None => format!(
                "no destinations, so every pool qualifies; pool {} has {}",
                first.name,
                ips.join(", ")
            ),
        });
        let others: Vec<String> = pools[1..].iter().map(|p| p.name.clone()).collect();
        if !others.is_empty() {
            reasons.push(format!("also eligible: {}", others.join(", ")));
        }
        plan.eligible_pools = pools.iter().map(|p| p.name.clone()).collect();
        plan.pool = Some(first.name.clone());
        plan.egress_ips = first.egress_ips.clone();
        // As for any placement: how the class was inferred comes last.
        if let Some(i) = reasons.iter().position(|r| r.starts_with("class inferred")) {
            let inferred = reasons.remove(i);
            reasons.push(inferred);
        }
    }

    /// The pool `pool:` names, `None` when it names none; `Err` (reported) when the settings do
    /// not define it.
    fn pinned_pool(
        &self,
        m: &LoadedManifest,
        t: usize,
        task: &Task,
        reasons: &mut Vec<String>,
        out: &mut Vec<Diagnostic>,
    ) -> Result<Option<&switchyard_config::settings::Pool>, ()> {
        let Some(name) = &task.pool else { return Ok(None) };
        let settings = &self.inputs.settings.settings;
        if let Some(pool) = settings.pool(name) {
            return Ok(Some(pool));
        }
        let base = m.task_path(t);
        let known = settings.pools.iter().map(|p| p.name.as_str());
        out.push(
            m.doc
                .error(
                    Code::UnknownPool,
                    &[base[0], base[1], Seg::Key("pool")],
                    format!("pool `{name}` is not defined in the settings"),
                )
                .with_hint(format!(
                    "{}pools are the `[[pools]]` of the settings: {}",
                    switchyard_config::suggest::did_you_mean(name, known),
                    settings.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
                )),
        );
        reasons.insert(0, format!("not placed: unknown pool {name}"));
        Err(())
    }
}

/// Where destination `i` of a task is declared.
fn destination_path(base: [Seg<'static>; 2], task: &Task, i: usize) -> Vec<Seg<'static>> {
    let mut path = base.to_vec();
    match (&task.source, &task.run) {
        (Some(Source::Sqlserver(_) | Source::Postgres(_)), _) => {
            path.extend([Seg::Key("source"), Seg::Key("host")])
        }
        (Some(Source::Kafka(_)), _) => path.extend([Seg::Key("source"), Seg::Key("brokers"), Seg::Index(i)]),
        (Some(Source::Https(_)), _) => path.extend([Seg::Key("source"), Seg::Key("url")]),
        (None, _) => path.extend([Seg::Key("run"), Seg::Key("destinations"), Seg::Index(i)]),
    }
    path
}
