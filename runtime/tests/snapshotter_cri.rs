//! `strata snapshotter` under containerd's CRI plugin, driven as a kubelet drives it:
//! a private containerd 1.6 whose CRI plugin runs pods on the `strata` proxy snapshotter,
//! with a pause image and a busybox built by strata and imported with `ctr` (nothing is
//! pulled), host-network pods (no CNI), and the kubelet's calls made with the k8s-cri
//! client: Version, RunPodSandbox, CreateContainer, StartContainer, ExecSync,
//! ListContainers, StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox.
//! Then the snapshotter holds the committed layers and none of the pod's active snapshots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod ctrd;
use ctrd::{wait, Env};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::{Endpoint, Uri};

// The CRI plugin serves the namespace kubelets use: runc's state is then under
// /run/containerd/runc/k8s.io (removed when empty).
const NAMESPACE: &str = "k8s.io";
const PAUSE: &str = "localhost/pause:1";
const BUSYBOX: &str = "localhost/busybox:1";

/// The CRI plugin's config: the strata snapshotter, runc v2 with cgroupfs (no systemd),
/// the test's pause image, empty CNI dirs (host-network pods need no CNI plugin) and a
/// streaming server on a free loopback port. `restrict_oom_score_adj`: root here lacks
/// CAP_SYS_RESOURCE, and runc cannot give the pause process the -998 the plugin asks for
/// ("failed to update /proc/self/oom_score_adj: Permission denied"); restricted, no
/// score goes below containerd's own.
fn cri_config(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
  sandbox_image = "{PAUSE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "strata"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/conf"
"#
    )
}

/// Run one CRI call to its end, for at most 60 s. (The reasons of a failure are in
/// containerd.log: STRATA_KEEP_CTRD=1 keeps the temp dir.)
fn call<T, F>(rt: &tokio::runtime::Runtime, what: &str, fut: F) -> T
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), fut).await }) {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => panic!("CRI {what}: {status} (STRATA_KEEP_CTRD=1 keeps the logs)"),
        Err(_) => panic!("CRI {what}: no answer in 60 s (STRATA_KEEP_CTRD=1 keeps the logs)"),
    }
}

/// Build `tag` from `dockerfile` (FROM busybox) on `store`, save it and import it with
/// `ctr image import --snapshotter strata` into the CRI namespace.
fn build_and_import(env: &Env, store: &Path, tag: &str, dockerfile: &str) {
    let ctx = env
        .dir
        .join(format!("ctx-{}", tag.replace(['/', ':'], "-")));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let build = ["build", "-q", "-t", tag, ctx.to_str().unwrap()];
    common::expect_ok(&build, common::strata_at(store, &build));
    let archive = ctx.join("image.tar");
    let save = ["save", "-o", archive.to_str().unwrap(), tag];
    common::expect_ok(&save, common::strata_at(store, &save));
    env.import(&archive);
}

/// The pod's cgroup parent (cgroupfs, as a kubelet's `/kubepods/…`), removed from every
/// v1 hierarchy once empty.
struct CgroupParent {
    parent: String,
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for e in entries.flatten() {
            let _ = std::fs::remove_dir(e.path().join(self.parent.trim_start_matches('/')));
        }
    }
}

#[test]
fn cri_pod_runs_on_strata_snapshots() {
    let t0 = Instant::now();
    let dir = ctrd::test_dir("snapshotter-cri");
    // Declared before env, so dropped after it: containerd and the pod are gone by then.
    let cgroups = CgroupParent {
        parent: format!("/strata-cri-{}", std::process::id()),
    };
    let mut env = Env::new(dir.clone(), NAMESPACE);
    for d in ["cni/bin", "cni/conf"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }

    let store = common::busybox_store(&dir.join("bb"));
    env.start_snapshotter();
    env.start_containerd(Some(&cri_config(&dir)));
    build_and_import(
        &env,
        &store,
        PAUSE,
        "FROM busybox\nENTRYPOINT [\"sleep\", \"1000000\"]\n",
    );
    build_and_import(&env, &store, BUSYBOX, "FROM busybox\nRUN echo b > /b\n");
    let layers = env.committed();
    assert!(!layers.is_empty(), "no committed layers after the imports");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sock = dir.join("ctrd.sock");
    let channel = rt
        .block_on(
            Endpoint::try_from("http://[::]")
                .unwrap()
                .connect_timeout(Duration::from_secs(10))
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let sock = sock.clone();
                    async move {
                        let s = tokio::net::UnixStream::connect(sock).await?;
                        Ok::<_, std::io::Error>(TokioIo::new(s))
                    }
                })),
        )
        .unwrap();
    let mut rs = cri::runtime_service_client::RuntimeServiceClient::new(channel.clone());
    let mut is = cri::image_service_client::ImageServiceClient::new(channel);

    let v = call(
        &rt,
        "Version",
        rs.version(cri::VersionRequest {
            version: "v1".into(),
        }),
    );
    assert_eq!(v.runtime_name, "containerd", "{v:?}");
    assert_eq!(v.runtime_api_version, "v1", "{v:?}");

    // The CRI plugin learns of images ctr imported from containerd's events.
    for image in [PAUSE, BUSYBOX] {
        let what = format!("the CRI plugin to see {image}");
        wait(&what, Duration::from_secs(30), || {
            let st = call(
                &rt,
                "ImageStatus",
                is.image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: image.into(),
                        ..Default::default()
                    }),
                    verbose: false,
                }),
            );
            st.image.is_some()
        });
    }

    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "strata-pod".into(),
            uid: format!("strata-pod-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        // No hostname: a host-network pod shares the host's UTS namespace (runc refuses
        // to set one), as a kubelet leaves it.
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroups.parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = call(
        &rt,
        "RunPodSandbox",
        rs.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        }),
    )
    .pod_sandbox_id;

    let ctr = call(
        &rt,
        "CreateContainer",
        rs.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "box".into(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: ["sh", "-c", "echo cri-ok > /tmp/x; sleep 1000"]
                    .map(String::from)
                    .to_vec(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config),
        }),
    )
    .container_id;
    call(
        &rt,
        "StartContainer",
        rs.start_container(cri::StartContainerRequest {
            container_id: ctr.clone(),
        }),
    );

    // The pod's two active snapshots (sandbox and container) are the snapshotter's.
    let active: Vec<String> = env
        .snapshots()
        .into_iter()
        .filter(|(_, kind)| kind == "Active")
        .map(|(key, _)| key)
        .collect();
    for id in [&pod, &ctr] {
        assert!(active.contains(id), "no active snapshot {id}: {active:?}");
    }

    // The shell may not have written /tmp/x yet: bounded retries.
    let mut out = String::new();
    wait("ExecSync cat /tmp/x", Duration::from_secs(20), || {
        let r = call(
            &rt,
            "ExecSync",
            rs.exec_sync(cri::ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: ["cat", "/tmp/x"].map(String::from).to_vec(),
                timeout: 10,
            }),
        );
        out = String::from_utf8_lossy(&r.stdout).into_owned();
        r.exit_code == 0
    });
    assert_eq!(out, "cri-ok\n", "ExecSync output");

    let list = call(
        &rt,
        "ListContainers",
        rs.list_containers(cri::ListContainersRequest { filter: None }),
    );
    let c = list
        .containers
        .iter()
        .find(|c| c.id == ctr)
        .unwrap_or_else(|| panic!("{ctr} not listed: {list:?}"));
    assert_eq!(c.pod_sandbox_id, pod);
    assert_eq!(
        c.state,
        cri::ContainerState::ContainerRunning as i32,
        "{c:?}"
    );

    call(
        &rt,
        "StopContainer",
        rs.stop_container(cri::StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 5,
        }),
    );
    call(
        &rt,
        "RemoveContainer",
        rs.remove_container(cri::RemoveContainerRequest {
            container_id: ctr.clone(),
        }),
    );
    call(
        &rt,
        "StopPodSandbox",
        rs.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    );
    call(
        &rt,
        "RemovePodSandbox",
        rs.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    );
    let list = call(
        &rt,
        "ListContainers",
        rs.list_containers(cri::ListContainersRequest { filter: None }),
    );
    assert!(list.containers.is_empty(), "left: {list:?}");

    // What the snapshotter holds now: the committed layers, and no active snapshot of
    // the pod (containerd removes them with the containers, through the proxy).
    let snaps = env.snapshots();
    assert!(
        !snaps.iter().any(|(key, _)| key == &pod || key == &ctr),
        "the pod's snapshots remain: {snaps:?}"
    );
    assert_eq!(env.committed(), layers, "committed layers after the pod");
    eprintln!(
        "snapshotter_cri: {} layer(s), {:.1} s",
        layers.len(),
        t0.elapsed().as_secs_f64()
    );
}
