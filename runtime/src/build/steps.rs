//! The steps that make a layer: RUN in a container over the stage's image, and COPY/ADD
//! of staged sources into a container's root; both committed as one layer.

use std::os::unix::fs::PermissionsExt;

use super::add_archive;
use super::context;
use super::copy_opts;
use super::dockerfile::{self, CopySpec};
use super::engine::{env_lookup, BuildOptions, Scratch, StageState};
use crate::container::commit::{self, CommitOptions};
use crate::container::cp::{self, CpOptions, HostEnd};
use crate::container::{self, RunOptions};
use crate::err;
use crate::image::{self, History};
use crate::store::Store;
use crate::util::{Ctx, Result};

/// Files copied into a created container (its id) instead of running a command.
type CopyFn<'a> = &'a dyn Fn(&str) -> Result<()>;

/// Run `argv` (or, with `copy`, copy files in) in a container over the stage's image,
/// commit its changes as one layer and append it to the stage's image.
pub(super) fn run_step(
    store: &Store,
    o: &BuildOptions,
    st: &mut StageState,
    argv: Vec<String>,
    env: Vec<String>,
    scratch: &mut Scratch<'_>,
    copy: Option<CopyFn<'_>>,
) -> Result<()> {
    let existed: Vec<String> = image::list_image_ids(store)?;
    let img_id = image::save_image(store, &st.img)?;
    if !existed.contains(&img_id) && !scratch.ids.contains(&img_id) {
        scratch.ids.push(img_id.clone());
    }
    let ro = RunOptions {
        image: img_id,
        cmd: argv.clone(),
        entrypoint: Some(String::new()),
        env,
        network: "host".into(),
        driver: if o.driver.is_empty() {
            "auto".into()
        } else {
            o.driver.clone()
        },
        ..RunOptions::default()
    };
    let cfg = container::create(store, &ro)?;
    let id = cfg.id.clone();
    let res = (|| -> Result<String> {
        match copy {
            Some(f) => f(&id)?,
            None => {
                let relay = super::step_output::StepOutput::start(o.quiet)?;
                let code = container::start(store, &id, true);
                drop(relay);
                let code = code?.unwrap_or(0);
                if code != 0 {
                    return Err(err!(
                        "process \"{}\" did not complete successfully: exit code: {code}",
                        argv.join(" ")
                    ));
                }
            }
        }
        commit::commit(store, &id, &CommitOptions::default())
    })();
    let _ = container::remove(store, &id, true);
    let new_id = res?;
    scratch.ids.push(new_id.clone());
    let committed = image::load_image(store, &new_id)?;
    st.img.rootfs.diff_ids = committed.rootfs.diff_ids;
    st.img.history.push(History {
        created: committed.created,
        ..History::default()
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn copy_step(
    store: &Store,
    o: &BuildOptions,
    st: &mut StageState,
    spec: &CopySpec,
    add: bool,
    done: &[(Option<String>, String)],
    scratch: &mut Scratch<'_>,
    x: &dyn Fn(&StageState, &str) -> Result<String>,
    esc: char,
) -> Result<()> {
    let dest = x(st, &spec.dest)?;
    let wd = st
        .img
        .config
        .working_dir
        .clone()
        .unwrap_or_else(|| "/".into());
    let dest = if dest.starts_with('/') {
        dest
    } else {
        format!("{}/{}", wd.trim_end_matches('/'), dest)
    };
    let dest = normalize(&dest);
    let staged = copy_sources(store, o, st, spec, esc, done)?;
    let mode = match &spec.chmod {
        Some(m) => Some(copy_opts::parse_chmod(&x(st, m)?)?),
        None => None,
    };
    let owner = match &spec.chown {
        Some(c) => Some(copy_opts::resolve_chown(store, st, scratch, &x(st, c)?)?),
        None => None,
    };
    for p in &staged.paths {
        copy_opts::apply(p, mode, owner)?;
    }
    // Owners travel only when --chown gave them (else root owns the copy, as in docker).
    let cp_opts = CpOptions {
        archive: owner.is_some(),
        follow: false,
    };
    let srcs = &staged.paths;
    if srcs.len() > 1 && !dest.ends_with('/') {
        return Err(err!(
            "When using COPY with more than one source file, the destination must be a directory and end with a /"
        ));
    }
    let multi = srcs.len() > 1 || dest.ends_with('/');
    // ADD unpacks a local tar (plain, gzip, zstd; known by its bytes, not its name) into
    // the destination directory, keeping the archive's owners, as docker does.
    let mut archives = Vec::new();
    for p in srcs {
        let a = add && spec.from.is_none() && add_archive::is_archive(p)?;
        if a && (mode.is_some() || owner.is_some()) {
            return Err(err!(
                "ADD --chown/--chmod of a local archive is not supported by strata build yet: \
                 ADD it, then RUN chown/chmod"
            ));
        }
        archives.push(a);
    }
    let f = |id: &str| -> Result<()> {
        for (p, archive) in srcs.iter().zip(&archives) {
            if *archive {
                let d = dest.trim_end_matches('/');
                cp::mkdir_p(store, id, d, None)?;
                let d = if d.is_empty() { "/" } else { d };
                add_archive::unpack(store, id, d, p)?;
                continue;
            }
            let target = if multi || p.is_dir() {
                let d = dest.trim_end_matches('/').to_string();
                cp::mkdir_p(store, id, &d, owner)?;
                if p.is_dir() {
                    format!("{}/", if d.is_empty() { "/".into() } else { d })
                } else {
                    format!("{d}/")
                }
            } else {
                // docker makes the missing parents of a file destination.
                if let Some((parent, _)) = dest.rsplit_once('/') {
                    if !parent.is_empty() {
                        cp::mkdir_p(store, id, parent, owner)?;
                    }
                }
                dest.clone()
            };
            let src = if p.is_dir() { p.join(".") } else { p.clone() };
            cp::copy_in(store, id, &target, HostEnd::Path(src), cp_opts)?;
        }
        Ok(())
    };
    run_step(
        store,
        o,
        st,
        vec!["/bin/true".into()],
        Vec::new(),
        scratch,
        Some(&f),
    )
}

/// Stage the sources COPY/ADD `spec` names (expanded with the stage's environment): from
/// the context, or from an earlier stage or an image with `--from`.
pub(super) fn copy_sources(
    store: &Store,
    o: &BuildOptions,
    st: &StageState,
    spec: &CopySpec,
    esc: char,
    done: &[(Option<String>, String)],
) -> Result<context::Staged> {
    let mut srcs = Vec::new();
    for s in &spec.sources {
        let s = dockerfile::expand(s, esc, &|n| env_lookup(st, n))?;
        if s.contains("://") {
            return Err(err!(
                "remote source {s}: strata build has no network for ADD URLs"
            ));
        }
        srcs.push(s);
    }
    let mut staged = match &spec.from {
        None => context::stage_context(store, &o.context, &srcs)?,
        Some(f) => {
            let f = dockerfile::expand(f, esc, &|n| st.args.get(n).cloned())?;
            let lower = f.to_lowercase();
            let by_name = done
                .iter()
                .find(|(n, _)| n.as_deref() == Some(lower.as_str()));
            let by_index = f.parse::<usize>().ok().and_then(|i| done.get(i));
            let id = match by_name.or(by_index) {
                Some((_, id)) => id.clone(),
                None => image::resolve(store, &f)?,
            };
            context::stage_image(store, &id, &srcs)?
        }
    };
    // A heredoc source is a file named after its delimiter holding the body (expanded
    // with the stage's env and args unless the delimiter was quoted), as buildkit does.
    for (i, h) in spec.heredocs.iter().enumerate() {
        let body = h.content();
        let body = if h.expand {
            dockerfile::expand_heredoc(&body, esc, &|n| {
                env_lookup(st, n).or_else(|| st.args.get(n).cloned())
            })?
        } else {
            body
        };
        let slot = staged.dir.join(format!("heredoc-{i}"));
        std::fs::create_dir(&slot).ctx(|| "cannot make a staging directory")?;
        if h.name.is_empty() || h.name.contains('/') || h.name == "." || h.name == ".." {
            return Err(err!("heredoc <<{}: not a usable file name", h.name));
        }
        let file = slot.join(&h.name);
        std::fs::write(&file, body).ctx(|| "cannot stage a heredoc source")?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
            .ctx(|| "cannot stage a heredoc source")?;
        staged.paths.push(file);
    }
    Ok(staged)
}

/// `dest` without `.`, `..` (never above `/`) or repeated slashes; a trailing slash (or
/// a final `.`) kept, as it means "into this directory".
fn normalize(dest: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in dest.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let into = dest.ends_with('/') || dest.ends_with("/.") || dest == ".";
    let mut out = format!("/{}", parts.join("/"));
    if into && !out.ends_with('/') {
        out.push('/');
    }
    out
}
