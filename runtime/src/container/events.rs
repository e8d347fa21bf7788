//! The event log behind `strata events`: one JSON line per container lifecycle event
//! (create, start, die, destroy, stop, kill, pause, unpause, rename, restart) in the store's
//! `events.jsonl`, in docker's event shape. Appended with one `write` under O_APPEND, so
//! concurrent writers never interleave a line; rotated to `events.jsonl.1` past 4 MiB.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::spec::ContainerConfig;
use crate::store::Store;

const ROTATE_AT: u64 = 4 << 20;

/// One event, as `docker events --format '{{json .}}'` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// "container".
    #[serde(rename = "Type")]
    pub kind: String,
    /// create, start, die, ...
    #[serde(rename = "Action")]
    pub action: String,
    /// The container.
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i128,
    /// docker's old spelling of the action.
    pub status: String,
    /// The container id.
    pub id: String,
    /// The image.
    pub from: String,
}

/// What an event is about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Actor {
    /// Container id.
    #[serde(rename = "ID")]
    pub id: String,
    /// name, image, exitCode, signal, ...
    #[serde(rename = "Attributes")]
    pub attributes: std::collections::BTreeMap<String, String>,
}

fn log_path(store: &Store) -> PathBuf {
    store.root.join("events.jsonl")
}

/// Record `action` on container `cfg` with extra attributes. Best effort: an event that
/// cannot be written is logged, never fails the command.
pub fn record(store: &Store, action: &str, cfg: &ContainerConfig, attrs: &[(&str, String)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut attributes = std::collections::BTreeMap::new();
    attributes.insert("name".to_string(), cfg.name.clone());
    attributes.insert("image".to_string(), cfg.image.clone());
    for (k, v) in attrs {
        attributes.insert((*k).to_string(), v.clone());
    }
    let e = Event {
        kind: "container".into(),
        action: action.into(),
        actor: Actor {
            id: cfg.id.clone(),
            attributes,
        },
        time: now.as_secs() as i64,
        time_nano: now.as_nanos() as i128,
        status: action.into(),
        id: cfg.id.clone(),
        from: cfg.image.clone(),
    };
    let path = log_path(store);
    let result = (|| -> std::io::Result<()> {
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
            std::fs::rename(&path, path.with_extension("jsonl.1"))?;
        }
        let mut line = serde_json::to_vec(&e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(&line)
    })();
    if let Err(err) = result {
        tracing::warn!(
            "cannot record the {action} event in {}: {err}",
            path.display()
        );
    }
}

/// Every recorded event, oldest first, and the byte offset reached in the current log
/// (to read on from, when following).
pub fn read_from(store: &Store, offset: Option<u64>) -> (Vec<Event>, u64) {
    let path = log_path(store);
    let mut text = String::new();
    if offset.is_none() {
        text.push_str(&std::fs::read_to_string(path.with_extension("jsonl.1")).unwrap_or_default());
    }
    let cur = std::fs::read(&path).unwrap_or_default();
    let start = offset.unwrap_or(0).min(cur.len() as u64) as usize;
    // Only whole lines: a writer may be mid-line.
    let end = cur[start..]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(start, |i| start + i + 1);
    text.push_str(&String::from_utf8_lossy(&cur[start..end]));
    let events = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (events, end as u64)
}
