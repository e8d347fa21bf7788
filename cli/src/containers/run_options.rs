//! `run`'s and `create`'s flags as the runtime's options.

use strata_runtime::container::RunOptions;

/// The runtime's options from run's (and create's) flags.
pub(super) fn run_options(a: super::RunArgs) -> strata_runtime::Result<RunOptions> {
    if let Some(ops) = &a.trace_ops {
        strata_fs::observe::trace::parse_ops(ops).map_err(strata_runtime::Error)?;
    }
    Ok(RunOptions {
        name: a.name,
        auto_remove: a.rm,
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
        hostname: a.hostname,
        volumes: a.volume,
        network: a.net,
        publish: a.publish,
        publish_all: a.publish_all,
        ip: a.ip,
        driver: a.driver,
        memory: a.memory,
        pids_limit: a.pids_limit,
        cpus: a.cpus,
        trace: a.trace,
        trace_ops: a.trace_ops,
        trace_path: a.trace_path,
        security: a.security.options(),
        mounts: a.mount,
        tmpfs: a.tmpfs,
        env_files: a.env_file,
        entrypoint: a.entrypoint,
        labels: a.label,
        ulimits: a.ulimit,
        cpuset_cpus: a.cpuset_cpus,
        cpuset_mems: a.cpuset_mems,
        restart: a.restart,
        group_add: a.group_add,
        add_hosts: a.add_host,
        dns: a.dns,
        init: a.init,
        read_only: a.read_only,
        stop_signal: a.stop_signal,
        stop_timeout: a.stop_timeout,
        image: a.image,
        cmd: a.cmd,
    })
}
