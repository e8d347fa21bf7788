//! The build engine: runs a parsed Dockerfile's stages step by step. Each RUN runs in a
//! real container over the stage's layers and its changes become a layer through the
//! ordinary commit (native delta layers on the fuse driver); COPY/ADD copy context files
//! into a container's root with `cp`'s in-root resolution (no symlink is followed out of
//! the root); metadata instructions change the config only (`empty_layer` history).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::cache;
use super::dockerfile::{self, Cmd, Instruction, Kind};
use super::steps::{copy_sources, copy_step, run_step};
use crate::err;
use crate::image::{self, History, ImageConfig};
use crate::store::Store;
use crate::util::{now_secs, rfc3339, Ctx, Result};

/// The PATH a stage gets when its base sets none (docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Options of `strata build`.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (default CONTEXT/Dockerfile).
    pub file: Option<PathBuf>,
    /// -t NAME[:TAG].
    pub tags: Vec<String>,
    /// --build-arg K=V.
    pub build_args: Vec<(String, String)>,
    /// --target STAGE.
    pub target: Option<String>,
    /// -q: no step output.
    pub quiet: bool,
    /// --label K=V on the result.
    pub labels: Vec<(String, String)>,
    /// --platform (only the host's is accepted).
    pub platform: Option<String>,
    /// --no-cache: run every step.
    pub no_cache: bool,
    /// --driver fuse|overlay|auto for the RUN containers (empty: auto).
    pub driver: String,
    /// --pull: fetch base images that name a registry even when they are in the store.
    pub pull: bool,
}

/// One stage's state while it builds.
pub(super) struct StageState {
    pub(super) img: ImageConfig,
    pub(super) shell: Vec<String>,
    pub(super) args: BTreeMap<String, String>,
    /// CMD was given in this stage (else ENTRYPOINT drops the base's CMD, as docker).
    pub(super) cmd_set: bool,
}

/// Images saved along the way that the result does not need.
pub(super) struct Scratch<'a> {
    pub(super) store: &'a Store,
    pub(super) ids: Vec<String>,
}

impl Drop for Scratch<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = image::delete_image(self.store, id);
        }
    }
}

/// Run the build; the resulting image id (tagged with every -t). A failed build leaves
/// no image, container or layer behind.
pub fn build(store: &Store, o: &BuildOptions) -> Result<String> {
    let r = build_stages(store, o);
    if r.is_err() {
        let _ = cache::gc_unused(store);
    }
    r
}

fn build_stages(store: &Store, o: &BuildOptions) -> Result<String> {
    if let Some(p) = &o.platform {
        let host = format!("linux/{}", image::commands::arch());
        if p != &host {
            return Err(err!(
                "--platform {p} is not supported: strata builds for {host} only"
            ));
        }
    }
    let file = o
        .file
        .clone()
        .unwrap_or_else(|| o.context.join("Dockerfile"));
    let text = std::fs::read_to_string(&file).ctx(|| format!("cannot read {}", file.display()))?;
    let df = dockerfile::parse(&text)?;
    // What the engine cannot do yet is refused before any step runs.
    for ins in df.stages.iter().flat_map(|s| &s.instructions) {
        let what = first_word(&ins.text);
        match &ins.kind {
            Kind::Copy(spec) | Kind::Add(spec) => {
                dockerfile::unsupported(spec, matches!(ins.kind, Kind::Add(_)))
                    .map_err(|e| err!("Dockerfile:{}: {what}: {}", ins.line, e.0))?;
            }
            _ => {}
        }
    }
    let last = match &o.target {
        Some(t) => df
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_lowercase().as_str()))
            .ok_or_else(|| err!("target stage {t} not found in {}", file.display()))?,
        None => df.stages.len().saturating_sub(1),
    };
    let cli_args: BTreeMap<String, String> = o.build_args.iter().cloned().collect();
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &df.global_args {
        let val = cli_args.get(k).cloned().or_else(|| {
            v.as_ref()
                .and_then(|d| dockerfile::expand(d, df.escape, &|n| global.get(n).cloned()).ok())
        });
        global.insert(k.clone(), val.unwrap_or_default());
    }
    let mut scratch = Scratch {
        store,
        ids: Vec::new(),
    };
    let mut done: Vec<(Option<String>, String)> = Vec::new();
    let total: usize = df.stages[..=last]
        .iter()
        .map(|s| s.instructions.len() + 1)
        .sum();
    let mut step = 0usize;
    let mut result = String::new();
    for stage in &df.stages[..=last] {
        let base = dockerfile::expand(&stage.base, df.escape, &|n| global.get(n).cloned())?;
        step += 1;
        progress(o, step, total, &stage.text);
        let (mut prev, mut img) = base_image(store, o, &base, &done)?;
        // The base's ONBUILD triggers run first; they are not inherited further (docker).
        let triggers = img.config.on_build.take().unwrap_or_default();
        let shell = img
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        let mut st = StageState {
            img,
            shell,
            args: BTreeMap::new(),
            cmd_set: false,
        };
        // As docker and buildah: a stage whose base sets no PATH gets the default one.
        if env_lookup(&st, "PATH").is_none() {
            let env = st.img.config.env.get_or_insert_with(Vec::new);
            env.insert(0, format!("PATH={DEFAULT_PATH}"));
        }
        let onbuild = onbuild_instructions(&triggers, df.escape)
            .map_err(|e| err!("{}: ONBUILD trigger of {base}: {}", stage.text, e.0))?;
        for ins in onbuild.iter().chain(&stage.instructions) {
            step += 1;
            progress(o, step, total, &ins.text);
            step_cached(
                store,
                o,
                &df,
                &cli_args,
                &global,
                &mut st,
                ins,
                &done,
                &mut scratch,
                &mut prev,
                step,
            )?;
        }
        st.img.created = st
            .img
            .history
            .last()
            .and_then(|h| h.created.clone())
            .or_else(|| st.img.created.clone());
        if stage.index == last {
            let labels = st.img.config.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &o.labels {
                labels.insert(k.clone(), v.clone());
            }
        }
        let id = image::save_image(store, &st.img)?;
        if stage.index != last {
            scratch.ids.push(id.clone());
        }
        done.push((stage.name.clone(), id.clone()));
        result = id;
    }
    scratch.ids.retain(|i| i != &result);
    if !o.tags.is_empty() {
        let _lock = store.lock_exclusive()?;
        let mut repos = image::read_repositories(store)?;
        for t in &o.tags {
            repos.insert(image::Reference::parse(t)?.to_string(), result.clone());
        }
        image::write_repositories(store, &repos)?;
    }
    Ok(result)
}

/// The base image's ONBUILD triggers as instructions (each was checked when the base was
/// built; a hand-made config is checked here).
fn onbuild_instructions(triggers: &[String], escape: char) -> Result<Vec<Instruction>> {
    if triggers.is_empty() {
        return Ok(Vec::new());
    }
    let mut text = if escape == '`' {
        "# escape=`\n".to_string()
    } else {
        String::new()
    };
    text.push_str("FROM scratch\n");
    for t in triggers {
        text.push_str(t);
        text.push('\n');
    }
    let df = dockerfile::parse(&text)?;
    let ins: Vec<Instruction> = df.stages.into_iter().flat_map(|s| s.instructions).collect();
    if let Some(bad) = ins
        .iter()
        .find(|i| matches!(i.kind, Kind::Onbuild(_) | Kind::From { .. }))
    {
        return Err(err!("{} isn't allowed as an ONBUILD trigger", bad.text));
    }
    Ok(ins)
}

fn first_word(s: &str) -> String {
    s.split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase()
}

fn progress(o: &BuildOptions, step: usize, total: usize, text: &str) {
    if !o.quiet {
        eprintln!(
            "#{step} [{step}/{total}] {}",
            text.lines().next().unwrap_or("")
        );
    }
}

/// The stage's base image: the first cache key and its config.
fn base_image(
    store: &Store,
    o: &BuildOptions,
    base: &str,
    done: &[(Option<String>, String)],
) -> Result<(String, ImageConfig)> {
    if base == "scratch" {
        return Ok((
            "scratch".into(),
            ImageConfig {
                architecture: image::commands::arch().into(),
                os: "linux".into(),
                ..ImageConfig::default()
            },
        ));
    }
    let lower = base.to_lowercase();
    if let Some((_, id)) = done
        .iter()
        .find(|(n, _)| n.as_deref() == Some(lower.as_str()))
    {
        return Ok((id.clone(), image::load_image(store, id)?));
    }
    // As docker: a base that is not in the store (or every base with --pull) is pulled,
    // but only when its name says which registry (no default registry is reachable here).
    let local = image::resolve(store, base).is_ok();
    if (o.pull || !local) && crate::transfer::pull::names_registry(base) {
        if !o.quiet {
            eprintln!("strata: pulling {base}");
        }
        let ro = crate::transfer::registry::Options {
            creds: None,
            insecure: false,
            quiet: true,
            timeout: None,
        };
        crate::transfer::pull::pull_opts(store, base, &ro, false)
            .map_err(|e| err!("cannot pull the base image {base}: {}", e.0))?;
    }
    let id = image::resolve(store, base).map_err(|e| {
        err!(
            "{}; a base image must be in the store (strata pull, load or import it) or name its registry",
            e.0
        )
    })?;
    Ok((id.clone(), image::load_image(store, &id)?))
}

/// One instruction, from the cache when its key has an entry.
#[allow(clippy::too_many_arguments)]
fn step_cached(
    store: &Store,
    o: &BuildOptions,
    df: &dockerfile::Dockerfile,
    cli_args: &BTreeMap<String, String>,
    global: &BTreeMap<String, String>,
    st: &mut StageState,
    ins: &Instruction,
    done: &[(Option<String>, String)],
    scratch: &mut Scratch<'_>,
    prev: &mut String,
    step: usize,
) -> Result<()> {
    let at = |e: crate::util::Error| {
        err!(
            "Dockerfile:{}: {}: {}",
            ins.line,
            first_word(&ins.text),
            e.0
        )
    };
    let digest = match &ins.kind {
        Kind::Copy(spec) | Kind::Add(spec) => {
            let staged = copy_sources(store, o, st, spec, df.escape, done).map_err(at)?;
            cache::sources_digest(&staged.paths).map_err(at)?
        }
        _ => String::new(),
    };
    let key = cache::key(prev, &ins.text, &st.args, &digest);
    let hit = if o.no_cache {
        None
    } else {
        cache::get(store, &key)
    };
    let layered = matches!(ins.kind, Kind::Run { .. } | Kind::Copy(_) | Kind::Add(_));
    match hit {
        Some(img) => {
            if !o.quiet {
                eprintln!("#{step} CACHED");
            }
            if !layered {
                run_instruction(store, o, df, cli_args, global, st, ins, done, scratch)
                    .map_err(at)?;
            }
            st.img = img;
        }
        None => {
            let t = std::time::Instant::now();
            run_instruction(store, o, df, cli_args, global, st, ins, done, scratch).map_err(at)?;
            cache::put(store, &key, &st.img)?;
            if !o.quiet && layered {
                eprintln!("#{step} DONE {:.1}s", t.elapsed().as_secs_f64());
            }
        }
    }
    *prev = key;
    Ok(())
}

pub(super) fn env_lookup(st: &StageState, name: &str) -> Option<String> {
    let env = st.img.config.env.as_deref().unwrap_or(&[]);
    env.iter()
        .rev()
        .find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .or_else(|| st.args.get(name).cloned())
}

fn set_env(st: &mut StageState, k: &str, v: &str) {
    let env = st.img.config.env.get_or_insert_with(Vec::new);
    env.retain(|e| e.split('=').next() != Some(k));
    env.push(format!("{k}={v}"));
}

fn command_of(st: &StageState, c: &Cmd) -> Vec<String> {
    match c {
        Cmd::Exec(v) => v.clone(),
        Cmd::Shell(s) => st.shell.iter().cloned().chain([s.clone()]).collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn run_instruction(
    store: &Store,
    o: &BuildOptions,
    df: &dockerfile::Dockerfile,
    cli_args: &BTreeMap<String, String>,
    global: &BTreeMap<String, String>,
    st: &mut StageState,
    ins: &Instruction,
    done: &[(Option<String>, String)],
    scratch: &mut Scratch<'_>,
) -> Result<()> {
    let esc = df.escape;
    let x = |st: &StageState, w: &str| dockerfile::expand(w, esc, &|n| env_lookup(st, n));
    let mut empty = true;
    let created_by;
    match &ins.kind {
        Kind::Run { cmd, heredocs, .. } => {
            let argv = match cmd {
                Cmd::Shell(s) if !heredocs.is_empty() => {
                    let full = if heredocs.len() == 1 && heredocs[0].script {
                        heredocs[0].content()
                    } else {
                        dockerfile::heredoc_command(s, heredocs)
                    };
                    st.shell.iter().cloned().chain([full]).collect()
                }
                _ => command_of(st, cmd),
            };
            created_by = format!("RUN {}", argv.join(" "));
            // ARGs in scope are in the step's environment (not in the image's).
            let env: Vec<String> = st.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            run_step(store, o, st, argv, env, scratch, None)?;
            empty = false;
        }
        Kind::Copy(spec) | Kind::Add(spec) => {
            let add = matches!(ins.kind, Kind::Add(_));
            copy_step(store, o, st, spec, add, done, scratch, &x, esc)?;
            created_by = format!("{} # buildkit", ins.text);
            empty = false;
        }
        Kind::Env(pairs) => {
            for (k, v) in pairs {
                let k = x(st, k)?;
                let v = x(st, v)?;
                set_env(st, &k, &v);
            }
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Arg(list) => {
            for (k, d) in list {
                let val = match cli_args.get(k) {
                    Some(v) => Some(v.clone()),
                    None => match d {
                        Some(d) => Some(x(st, d)?),
                        None => global.get(k).cloned(),
                    },
                };
                st.args.insert(k.clone(), val.unwrap_or_default());
            }
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Workdir(w) => {
            let w = x(st, w)?;
            let cur = st
                .img
                .config
                .working_dir
                .clone()
                .unwrap_or_else(|| "/".into());
            let abs = if w.starts_with('/') {
                w
            } else {
                format!("{}/{}", cur.trim_end_matches('/'), w)
            };
            st.img.config.working_dir = Some(abs);
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::User(u) => {
            st.img.config.user = Some(x(st, u)?);
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Cmd(c) => {
            st.img.config.cmd = Some(command_of(st, c));
            st.cmd_set = true;
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Entrypoint(c) => {
            st.img.config.entrypoint = Some(command_of(st, c));
            if !st.cmd_set {
                st.img.config.cmd = None;
            }
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Expose(ports) => {
            let m = st
                .img
                .config
                .exposed_ports
                .get_or_insert_with(BTreeMap::new);
            for p in ports {
                let p = dockerfile::expand(p, esc, &|_| None)?;
                let p = if p.contains('/') {
                    p
                } else {
                    format!("{p}/tcp")
                };
                m.insert(p, serde_json::json!({}));
            }
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Label(pairs) => {
            for (k, v) in pairs {
                let k = x(st, k)?;
                let v = x(st, v)?;
                st.img
                    .config
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(k, v);
            }
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Volume(v) => {
            for p in v {
                let p = x(st, p)?;
                st.img
                    .config
                    .volumes
                    .get_or_insert_with(BTreeMap::new)
                    .insert(p, serde_json::json!({}));
            }
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::StopSignal(s) => {
            st.img.config.stop_signal = Some(x(st, s)?);
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Shell(s) => {
            st.shell = s.clone();
            st.img.config.shell = Some(s.clone());
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Maintainer(m) => {
            st.img
                .extra
                .insert("author".into(), serde_json::Value::String(m.clone()));
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Healthcheck(h) => {
            st.img.config.healthcheck = Some(health_json(h));
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::Onbuild(t) => {
            st.img
                .config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(t.clone());
            created_by = format!("{} # buildkit", ins.text);
        }
        Kind::From { .. } => return Err(err!("FROM inside a stage")),
    }
    if empty {
        st.img.history.push(History {
            created: Some(rfc3339(now_secs())),
            created_by: Some(created_by),
            comment: None,
            empty_layer: Some(true),
        });
    } else if let Some(h) = st.img.history.last_mut() {
        h.created_by = Some(created_by);
        h.comment = Some("buildkit.dockerfile.v0".into());
    }
    Ok(())
}

/// A HEALTHCHECK as docker's config stores it: `NONE` is `{"Test": ["NONE"]}`; durations
/// in nanoseconds, unset ones left out.
fn health_json(h: &dockerfile::Health) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    let test = h.test.clone().unwrap_or_else(|| vec!["NONE".into()]);
    m.insert("Test".into(), serde_json::json!(test));
    for (k, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), serde_json::json!(v));
        }
    }
    if let Some(r) = h.retries {
        m.insert("Retries".into(), serde_json::json!(r));
    }
    serde_json::Value::Object(m)
}
