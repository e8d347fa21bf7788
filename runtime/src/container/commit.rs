//! `strata diff`, `commit` and `export`: a container's changes as a list, as a new image
//! layer, and its whole root as a tar.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::container::{self, ContainerConfig, Paths, Status};
use crate::driver::{self, Driver};
use crate::image::{self, History, ImageConfig, Reference};
use crate::layer::upper_diff::{self, Change, Lowers};
use crate::layer::write::TarWriter;
use crate::store::{remove_tree, Store};
use crate::util::{now_secs, rfc3339, Ctx, Result};
use crate::{err, layer};

/// The container's merged root: its live mount while it runs, else a read-only mount made
/// for the occasion (removed on drop).
pub struct MergedView {
    path: PathBuf,
    staging: Option<PathBuf>,
}

impl MergedView {
    /// Find or make the merged view of container `cfg`.
    pub fn open(store: &Store, cfg: &ContainerConfig) -> Result<MergedView> {
        let paths = Paths::new(store, &cfg.id);
        // First: after a crashed supervisor the root may still be mounted (and, with its
        // FUSE daemon dead, unreadable); reconcile unmounts it so a fresh view is made.
        let st = container::reconcile(store, &cfg.id)?;
        if driver::is_mounted(&paths.merged()) {
            return Ok(MergedView {
                path: paths.merged(),
                staging: None,
            });
        }
        if st.status == Status::Running {
            return Err(err!(
                "container {} is running but its root is not mounted in this namespace: retry, or stop it first",
                cfg.name
            ));
        }
        layer::check_present(store, &cfg.layers)?;
        let dir = store.staging_dir("view")?;
        let m = dir.join("merged");
        let view = MergedView {
            path: m.clone(),
            staging: Some(dir),
        };
        std::fs::create_dir(&m).ctx(|| format!("cannot create {}", m.display()))?;
        driver::mount_readonly(
            Driver::from_name(&cfg.driver)?,
            &lowers_of(store, cfg),
            &paths.upper(),
            &paths.work(),
            &m,
        )?;
        Ok(view)
    }

    /// Where the merged root is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MergedView {
    fn drop(&mut self) {
        if let Some(dir) = &self.staging {
            let _ = driver::unmount(&self.path);
            let _ = remove_tree(dir);
        }
    }
}

fn lowers_of(store: &Store, cfg: &ContainerConfig) -> Vec<PathBuf> {
    container::lower_dirs(store, cfg)
}

/// `strata diff`: the container's changes, sorted by path.
pub fn diff(store: &Store, id: &str) -> Result<Vec<Change>> {
    let cfg = container::load_config(store, id)?;
    layer::check_present(store, &cfg.layers)?;
    let lowers = Lowers {
        dirs: lowers_of(store, &cfg),
    };
    let mut view: Option<MergedView> = None;
    let mut merged = || -> Result<PathBuf> {
        if view.is_none() {
            view = Some(MergedView::open(store, &cfg)?);
        }
        Ok(view
            .as_ref()
            .map(|v| v.path().to_path_buf())
            .unwrap_or_default())
    };
    upper_diff::changes(&lowers, &Paths::new(store, id).upper(), &mut merged)
}

/// Options of `strata commit`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// NAME[:TAG] for the new image (untagged when None).
    pub reference: Option<String>,
    /// Dockerfile instructions applied to the config (-c).
    pub changes: Vec<String>,
    /// Commit message (-m).
    pub message: Option<String>,
    /// Author (-a).
    pub author: Option<String>,
}

struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

/// Write the container's changes as a layer tar to `out`.
pub fn write_layer(store: &Store, cfg: &ContainerConfig, out: impl Write) -> Result<()> {
    let paths = Paths::new(store, &cfg.id);
    // strata's union marks entries that are not plain diffs (metadata-only copies, renamed
    // directories, later delta files): those are read through the merged view.
    let view = match Driver::from_name(&cfg.driver)? {
        Driver::Fuse => Some(MergedView::open(store, cfg)?),
        Driver::Overlay => None,
    };
    let mut w = TarWriter::new(out);
    w.layer(&paths.upper(), view.as_ref().map(MergedView::path))?;
    let mut out = w.finish()?;
    out.flush().ctx(|| "cannot write the layer")?;
    Ok(())
}

enum Staged {
    Native(crate::layer::native::NativeStaged),
    Plain(layer::Staged),
}

/// The container's changes as a plain layer: its upper expanded through the merged view,
/// tarred and extracted (what every commit did before native layers).
fn stage_expanded(store: &Store, cfg: &ContainerConfig) -> Result<layer::Staged> {
    let staging = Staging(store.staging_dir("commit")?);
    let tar_path = staging.0.join("layer.tar");
    let f = File::create(&tar_path).ctx(|| format!("cannot create {}", tar_path.display()))?;
    let mut bw = BufWriter::new(f);
    write_layer(store, cfg, &mut bw)?;
    drop(bw);
    let f = File::open(&tar_path).ctx(|| format!("cannot read {}", tar_path.display()))?;
    layer::stage_opts(store, f, true)
}

/// `strata commit`: a new image from the container's image plus its changes; the image id.
pub fn commit(store: &Store, id: &str, o: &CommitOptions) -> Result<String> {
    let reference = o.reference.as_deref().map(Reference::parse).transpose()?;
    let cfg = container::load_config(store, id)?;
    let mut exec = container_exec_config(store, &cfg);
    for c in &o.changes {
        crate::image::changes::apply(&mut exec, c)?;
    }
    // A fuse container's upper is kept as it is (docs/commit.md); anything else is
    // expanded into a plain layer tar, as docker does.
    let staged = match crate::layer::native::stage(store, &cfg)? {
        Some(n) => Staged::Native(n),
        None => Staged::Plain(stage_expanded(store, &cfg)?),
    };

    let _lock = store.lock_exclusive()?;
    // Read before anything is published: a tag table that cannot be written leaves no
    // untagged image or layer behind.
    let repos = match &reference {
        Some(_) => Some(image::read_repositories(store)?),
        None => None,
    };
    let parent = image::load_image(store, &cfg.image_id).ok();
    let hex = match staged {
        Staged::Native(n) => crate::layer::native::publish(store, n)?,
        Staged::Plain(p) => layer::publish(store, p)?,
    };
    let created = rfc3339(now_secs());
    let mut img = parent.unwrap_or_else(|| ImageConfig {
        architecture: crate::image::commands::arch().into(),
        os: "linux".into(),
        rootfs: image::RootFs {
            kind: "layers".into(),
            diff_ids: cfg.layers.iter().map(|h| format!("sha256:{h}")).collect(),
        },
        ..ImageConfig::default()
    });
    img.created = Some(created.clone());
    img.config = exec;
    img.rootfs.diff_ids = cfg
        .layers
        .iter()
        .map(|h| format!("sha256:{h}"))
        .chain([format!("sha256:{hex}")])
        .collect();
    if let Some(a) = &o.author {
        img.extra
            .insert("author".into(), serde_json::Value::String(a.clone()));
    }
    img.history.push(History {
        created: Some(created),
        created_by: Some(format!("strata commit {}", cfg.process.args.join(" "))),
        comment: o.message.clone(),
        empty_layer: None,
    });
    let image_id = image::save_image(store, &img)?;
    if let (Some(r), Some(mut repos)) = (reference, repos) {
        repos.insert(r.to_string(), image_id.clone());
        image::write_repositories(store, &repos)?;
    }
    Ok(image_id)
}

/// The run config a commit records: the image's, with the container's command, environment,
/// working directory and user (as docker commit does).
fn container_exec_config(store: &Store, cfg: &ContainerConfig) -> image::ExecConfig {
    let mut exec = image::load_image(store, &cfg.image_id)
        .map(|i| i.config)
        .unwrap_or_default();
    let args = &cfg.process.args;
    match &exec.entrypoint {
        Some(ep) if args.starts_with(ep) => {
            exec.cmd = Some(args[ep.len()..].to_vec()).filter(|c| !c.is_empty());
        }
        _ => {
            exec.entrypoint = None;
            exec.cmd = Some(args.clone());
        }
    }
    exec.env = Some(cfg.process.env.clone()).filter(|e| !e.is_empty());
    if cfg.process.cwd != "/" || exec.working_dir.is_some() {
        exec.working_dir = Some(cfg.process.cwd.clone());
    }
    exec.user = Some(cfg.process.user.clone()).filter(|u| !u.is_empty());
    exec
}

/// `strata export`: the container's merged root as a tar on `out`.
pub fn export(store: &Store, id: &str, out: impl Write) -> Result<()> {
    let cfg = container::load_config(store, id)?;
    let view = MergedView::open(store, &cfg)?;
    let mut w = TarWriter::new(out);
    w.tree(Path::new(""), view.path())?;
    let mut out = w.finish()?;
    out.flush().ctx(|| "cannot write the tar")
}
