//! `ps --filter KEY=VALUE`, docker's rules: the same key given twice matches either value,
//! different keys must all match.

use std::collections::BTreeMap;

use strata_runtime::container::{ContainerConfig, State, Status};
use strata_runtime::store::Store;

/// The parsed filters, key to the values given for it.
#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

const KEYS: [&str; 6] = ["name", "status", "label", "id", "ancestor", "exited"];

/// docker's status words for a state.
fn status_word(st: &State) -> &'static str {
    match st.status {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited if st.supervisor.is_some() => "restarting",
        Status::Exited => "exited",
    }
}

impl Filters {
    /// Parse each `KEY=VALUE`.
    pub fn parse(specs: &[String]) -> strata_runtime::Result<Filters> {
        let mut f = Filters::default();
        for s in specs {
            let (k, v) = s.split_once('=').ok_or_else(|| {
                strata_runtime::Error(format!("invalid --filter {s:?}: use KEY=VALUE"))
            })?;
            if !KEYS.contains(&k) {
                return Err(strata_runtime::Error(format!(
                    "unsupported --filter key {k:?}: use one of {}",
                    KEYS.join(", ")
                )));
            }
            if k == "exited" && v.parse::<i32>().is_err() {
                return Err(strata_runtime::Error(format!(
                    "invalid --filter {s:?}: exited= takes an exit code"
                )));
            }
            f.0.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(f)
    }

    /// Whether a status filter was given (it also lists stopped containers, as docker).
    pub fn has_status(&self) -> bool {
        self.0.contains_key("status") || self.0.contains_key("exited")
    }

    /// Whether container `c` in state `st` passes every filter.
    pub fn matches(&self, store: &Store, c: &ContainerConfig, st: &State) -> bool {
        self.0.iter().all(|(k, vals)| {
            vals.iter().any(|v| match k.as_str() {
                "name" => c.name.contains(v.as_str()),
                "id" => c.id.starts_with(v.as_str()),
                "status" => status_word(st) == v,
                "exited" => {
                    st.status == Status::Exited
                        && st.exit_code.map(|e| e.to_string()) == Some(v.clone())
                }
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => c.extras.labels.get(lk).is_some_and(|x| x == lv),
                    None => c.extras.labels.contains_key(v.as_str()),
                },
                "ancestor" => {
                    c.image == *v
                        || c.image_id
                            .trim_start_matches("sha256:")
                            .starts_with(v.trim_start_matches("sha256:"))
                        || strata_runtime::image::resolve(store, v).is_ok_and(|id| id == c.image_id)
                }
                _ => false,
            })
        })
    }
}
