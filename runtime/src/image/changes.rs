//! `--change` instructions (Dockerfile syntax) applied to an image's run config.

use crate::err;
use crate::image::ExecConfig;
use crate::util::Result;

/// JSON array form (`["a","b"]`) or shell form (wrapped in `/bin/sh -c`).
fn command(arg: &str) -> Result<Vec<String>> {
    let t = arg.trim();
    if t.starts_with('[') {
        serde_json::from_str(t).map_err(|e| err!("invalid JSON array {t}: {e}"))
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), t.into()])
    }
}

/// Apply one instruction: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL.
pub fn apply(cfg: &mut ExecConfig, change: &str) -> Result<()> {
    let change = change.trim();
    let (instr, arg) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let arg = arg.trim();
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => cfg.cmd = Some(command(arg)?),
        "ENTRYPOINT" => cfg.entrypoint = Some(command(arg)?),
        "ENV" => {
            let pairs: Vec<(String, String)> = if arg.contains('=') {
                arg.split_whitespace()
                    .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string())))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err!("invalid ENV {arg:?}: use ENV KEY=VALUE"))?
            } else {
                let (k, v) = arg.split_once(char::is_whitespace).ok_or_else(|| err!("invalid ENV {arg:?}: use ENV KEY=VALUE"))?;
                vec![(k.to_string(), v.trim().to_string())]
            };
            let env = cfg.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs {
                env.retain(|e| e.split('=').next() != Some(k.as_str()));
                env.push(format!("{k}={v}"));
            }
        }
        "WORKDIR" => {
            if !arg.starts_with('/') {
                return Err(err!("WORKDIR must be absolute: {arg}"));
            }
            cfg.working_dir = Some(arg.to_string());
        }
        "USER" => cfg.user = Some(arg.to_string()),
        "LABEL" => {
            let labels = cfg.labels.get_or_insert_with(Default::default);
            for kv in arg.split_whitespace() {
                let (k, v) = kv.split_once('=').ok_or_else(|| err!("invalid LABEL {kv:?}: use LABEL key=value"))?;
                labels.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
        "EXPOSE" => {
            let ports = cfg.exposed_ports.get_or_insert_with(Default::default);
            for p in arg.split_whitespace() {
                let p = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                ports.insert(p, serde_json::json!({}));
            }
        }
        "VOLUME" => {
            let vols = cfg.volumes.get_or_insert_with(Default::default);
            let list: Vec<String> = if arg.starts_with('[') { command(arg)? } else { arg.split_whitespace().map(str::to_string).collect() };
            for v in list {
                vols.insert(v, serde_json::json!({}));
            }
        }
        "STOPSIGNAL" => cfg.stop_signal = Some(arg.to_string()),
        other => {
            return Err(err!(
                "unsupported --change instruction {other:?}: use CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME or STOPSIGNAL"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_changes() {
        let mut c = ExecConfig::default();
        apply(&mut c, r#"CMD ["/bin/sh"]"#).unwrap();
        apply(&mut c, "ENTRYPOINT echo hi").unwrap();
        apply(&mut c, "ENV A=1 B=2").unwrap();
        apply(&mut c, "ENV A 3").unwrap();
        apply(&mut c, "WORKDIR /tmp").unwrap();
        assert_eq!(c.cmd, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(c.entrypoint.as_ref().map(Vec::len), Some(3));
        assert_eq!(c.env, Some(vec!["B=2".to_string(), "A=3".to_string()]));
        assert!(apply(&mut c, "RUN x").is_err());
        assert!(apply(&mut c, "WORKDIR rel").is_err());
    }
}
