//! Security the docker way (issue 16): the default seccomp profile (docker's allow-list and
//! what it blocks, on the native and the 32-bit x86 ABI), `--security-opt seccomp=FILE|
//! unconfined` with profiles in docker's JSON format, no-new-privileges, label/apparmor,
//! `strata exec` under the same filter, and a rootless init whose environment the container
//! cannot read. Capabilities are in capabilities.rs.
//!
//! Real containers of a busybox image (Debian's busybox-static) plus tiny static programs
//! assembled here with binutils (`as`, `ld`, from build-essential), each making one syscall
//! with zero arguments and exiting with its errno (0 on success): the assertions compare
//! exact errnos, and each blocked syscall has a positive control where the answer depends
//! on the kernel rather than the filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::store_env::StoreEnv;
use common::{ensure_user, strata_bin};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// x86_64 syscall numbers the default profile must refuse with EPERM.
const BLOCKED_64: [(&str, u32); 14] = [
    ("add_key", 248),
    ("request_key", 249),
    ("keyctl", 250),
    ("userfaultfd", 323),
    ("kexec_load", 246),
    ("kexec_file_load", 320),
    ("bpf", 321),
    ("perf_event_open", 298),
    ("mount", 165),
    ("umount2", 166),
    ("reboot", 169),
    ("swapon", 167),
    ("init_module", 175),
    ("unshare", 272),
];

/// The same on the i386 ABI (int 0x80), which the filter must cover too.
const BLOCKED_32: [(&str, u32); 4] = [
    ("keyctl", 288),
    ("add_key", 286),
    ("unshare", 310),
    ("mount", 21),
];

/// A program making syscall `nr` with zero arguments (x86_64, or i386 when `i386`), exiting
/// with the errno; the reason when binutils cannot produce it or the kernel cannot run it.
fn assemble(dir: &Path, name: &str, nr: u32, i386: bool) -> Result<PathBuf, String> {
    assemble_with(dir, name, nr, [0; 3], i386)
}

/// docker's conditional rules, on x86_64: (name, syscall, arguments, errno wanted).
const CONDITIONAL: [(&str, u32, [u32; 3], &str); 8] = [
    // clone(CLONE_NEWUSER | SIGCHLD): a new namespace needs CAP_SYS_ADMIN; a plain fork not.
    ("clone-newuser", 56, [0x1000_0011, 0, 0], "1"),
    ("clone-fork", 56, [0x11, 0, 0], "0"),
    // ptrace(PTRACE_TRACEME): allowed from kernel 4.8 (minKernel).
    ("ptrace-traceme", 101, [0, 0, 0], "0"),
    ("socket-vsock", 41, [40, 1, 0], "1"),
    ("socket-unix", 41, [1, 1, 0], "0"),
    ("personality-query", 135, [0xffff_ffff, 0, 0], "0"),
    ("personality-linux", 135, [0, 0, 0], "0"),
    (
        "personality-read-implies-exec",
        135,
        [0x0040_0000, 0, 0],
        "1",
    ),
];

/// As `assemble`, with the first three arguments set (x86_64 only).
fn assemble_with(
    dir: &Path,
    name: &str,
    nr: u32,
    a: [u32; 3],
    i386: bool,
) -> Result<PathBuf, String> {
    let src = dir.join(format!("{name}.s"));
    let obj = dir.join(format!("{name}.o"));
    let out = dir.join(name);
    let body = if i386 {
        format!(
            ".globl _start\n_start:\n mov ${nr}, %eax\n xor %ebx, %ebx\n xor %ecx, %ecx\n xor %edx, %edx\n xor %esi, %esi\n xor %edi, %edi\n int $0x80\n xor %ebx, %ebx\n test %eax, %eax\n jns 1f\n neg %eax\n mov %eax, %ebx\n1:\n mov $1, %eax\n int $0x80\n"
        )
    } else {
        format!(
            ".globl _start\n_start:\n mov ${nr}, %eax\n mov ${}, %edi\n mov ${}, %esi\n mov ${}, %edx\n xor %r10, %r10\n xor %r8, %r8\n xor %r9, %r9\n syscall\n xor %edi, %edi\n test %rax, %rax\n jns 1f\n neg %rax\n mov %eax, %edi\n1:\n mov $60, %eax\n syscall\n",
            a[0], a[1], a[2]
        )
    };
    std::fs::write(&src, body).unwrap();
    let (asflag, ldflag) = if i386 {
        ("--32", "elf_i386")
    } else {
        ("--64", "elf_x86_64")
    };
    let run = |c: &mut Command| {
        c.output()
            .map_err(|e| e.to_string())
            .and_then(|o| match o.status.success() {
                true => Ok(()),
                false => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
            })
    };
    run(Command::new("as").arg(asflag).arg(&src).arg("-o").arg(&obj))?;
    run(Command::new("ld")
        .args(["-m", ldflag, "-static"])
        .arg(&obj)
        .arg("-o")
        .arg(&out))?;
    // The i386 ABI may be off in the kernel (IA32_EMULATION=n): then there is nothing to filter.
    let st = Command::new(&out)
        .status()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    st.code()
        .map(|_| out.clone())
        .ok_or_else(|| format!("{name} died: {st}"))
}

struct Env {
    env: StoreEnv,
    /// Why the i386 programs are missing, if they are.
    no_i386: Option<String>,
}

impl std::ops::Deref for Env {
    type Target = StoreEnv;
    fn deref(&self) -> &StoreEnv {
        &self.env
    }
}

impl Env {
    fn new() -> Env {
        let env = StoreEnv::bare("sec");
        let dir = env.dir.clone();
        let rootfs = env.rootfs();
        for d in ["home/bob", "sys64", "sys32", "cond"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::set_permissions(rootfs.join("tmp"), PermissionsExt::from_mode(0o1777)).unwrap();
        env.write_rootfs(
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000:bob:/home/bob:/bin/sh\n",
        );
        env.write_rootfs("etc/group", "root:x:0:\nbob:x:1000:\n");
        for (name, nr) in BLOCKED_64 {
            let p = assemble(&dir, &format!("x64-{name}"), nr, false).unwrap();
            std::fs::copy(p, rootfs.join("sys64").join(name)).unwrap();
        }
        for (name, nr, args, _) in CONDITIONAL {
            let p = assemble_with(&dir, name, nr, args, false).unwrap();
            std::fs::copy(p, rootfs.join("cond").join(name)).unwrap();
        }
        let mut no_i386 = None;
        for (name, nr) in BLOCKED_32 {
            match assemble(&dir, &format!("i386-{name}"), nr, true) {
                Ok(p) => {
                    std::fs::copy(p, rootfs.join("sys32").join(name)).unwrap();
                }
                Err(e) => no_i386 = Some(e),
            }
        }
        // i386 mkdir("/", 0): EEXIST through the kernel, EPERM through a filter denying it.
        if no_i386.is_none() {
            let src = ".globl _start\n_start:\n mov $39, %eax\n push $0x2f\n mov %esp, %ebx\n xor %ecx, %ecx\n int $0x80\n xor %ebx, %ebx\n test %eax, %eax\n jns 1f\n neg %eax\n mov %eax, %ebx\n1:\n mov $1, %eax\n int $0x80\n";
            std::fs::write(dir.join("m32.s"), src).unwrap();
            let ok = Command::new("as")
                .args(["--32", "-o"])
                .arg(dir.join("m32.o"))
                .arg(dir.join("m32.s"))
                .status()
                .unwrap()
                .success()
                && Command::new("ld")
                    .args(["-m", "elf_i386", "-static", "-o"])
                    .arg(rootfs.join("sys32/mkdir"))
                    .arg(dir.join("m32.o"))
                    .status()
                    .unwrap()
                    .success();
            assert!(ok, "assembling the i386 mkdir program failed");
        }
        env.import_rootfs("sec", &[]);
        Env { env, no_i386 }
    }

    /// `run --rm [opts] sec CMD...`: exit code, stdout, stderr.
    fn run(&self, opts: &[&str], cmd: &[&str]) -> (i32, String, String) {
        let mut a = vec!["run", "--rm"];
        a.extend(opts);
        a.push("sec");
        a.extend(cmd);
        let out = self.strata(&a);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The exit code of each program in `dir` of the image, as "name=code" lines.
    fn codes(&self, opts: &[&str], dir: &str) -> Vec<String> {
        let script = format!("for p in /{dir}/*; do $p; echo \"${{p##*/}}=$?\"; done");
        let (code, out, err) = self.run(opts, &["sh", "-c", &script]);
        assert_eq!(code, 0, "{err}");
        out.lines().map(String::from).collect()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

const NO_MKDIR: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
}"#;

#[test]
fn the_default_profile_blocks_what_docker_blocks_on_every_abi() {
    let e = Env::new();
    // unshare of a user namespace: EPERM by default, allowed unconfined (root, no caps needed).
    let (code, _, err) = e.run(&[], &["unshare", "-U", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    let (code, _, err) = e.run(
        &["--security-opt", "seccomp=unconfined"],
        &["unshare", "-U", "true"],
    );
    assert_eq!(code, 0, "unconfined unshare -U: {err}");
    // Each blocked syscall: EPERM (1) under the default profile.
    let confined = e.codes(&[], "sys64");
    for (name, _) in BLOCKED_64 {
        assert!(
            confined.contains(&format!("{name}=1")),
            "{name}: {confined:?}"
        );
    }
    // Positive controls: unconfined, the kernel itself answers the keyring calls (which
    // need no privilege) and unshare(0); whatever the exact errno, it is not the filter's.
    let open = e.codes(&["--security-opt", "seccomp=unconfined"], "sys64");
    for name in ["keyctl", "add_key", "request_key", "unshare"] {
        assert!(
            open.iter()
                .any(|l| l.starts_with(&format!("{name}=")) && *l != format!("{name}=1")),
            "{name} unconfined: {open:?}"
        );
    }
    assert!(open.contains(&"unshare=0".to_string()), "{open:?}");
    // Argument rules: AF_VSOCK sockets and personalities other than docker's few refused.
    let cond = e.codes(&[], "cond");
    for (name, _, _, want) in CONDITIONAL {
        assert!(cond.contains(&format!("{name}={want}")), "{name}: {cond:?}");
    }
    let open_cond = e.codes(&["--security-opt", "seccomp=unconfined"], "cond");
    assert!(
        open_cond.contains(&"personality-read-implies-exec=0".to_string()),
        "{open_cond:?}"
    );
    assert!(
        !open_cond.contains(&"socket-vsock=1".to_string()),
        "{open_cond:?}"
    );
    // The 32-bit ABI goes through the same rules.
    match &e.no_i386 {
        Some(why) => {
            eprintln!("skipping the i386 checks: cannot build or run i386 programs here: {why}")
        }
        None => {
            let c32 = e.codes(&[], "sys32");
            for (name, _) in BLOCKED_32 {
                assert!(c32.contains(&format!("{name}=1")), "i386 {name}: {c32:?}");
            }
            // mkdir("/") is allowed: EEXIST (17) from the kernel, not the filter.
            assert!(c32.contains(&"mkdir=17".to_string()), "{c32:?}");
            let open32 = e.codes(&["--security-opt", "seccomp=unconfined"], "sys32");
            assert!(open32.contains(&"unshare=0".to_string()), "{open32:?}");
            assert!(!open32.contains(&"keyctl=1".to_string()), "{open32:?}");
        }
    }
    // CAP_SYS_ADMIN brings the syscalls docker allows with it (unshare, mount, ...).
    let (code, _, err) = e.run(&["--cap-add", "SYS_ADMIN"], &["unshare", "-U", "true"]);
    assert_eq!(code, 0, "unshare -U with CAP_SYS_ADMIN: {err}");
    let (_, out, _) = e.run(&[], &["grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(out.trim(), "Seccomp:\t2");
}

#[test]
fn a_profile_file_in_docker_format_applies_to_run_and_exec() {
    let e = Env::new();
    let prof = e.write("nomkdir.json", NO_MKDIR);
    let opt = format!("seccomp={prof}");
    let (code, _, err) = e.run(&["--security-opt", &opt], &["mkdir", "/tmp/x"]);
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    // Everything else is allowed by that profile (unshare -U included).
    let (code, _, err) = e.run(&["--security-opt", &opt], &["unshare", "-U", "true"]);
    assert_eq!(code, 0, "{err}");
    if e.no_i386.is_none() {
        let (code, out, err) = e.run(
            &["--security-opt", &opt],
            &["sh", "-c", "/sys32/mkdir; echo $?"],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "1", "i386 mkdir under the profile");
    }
    // An ABI the profile does not list is killed (SIGSYS: 128+31), never let through.
    if e.no_i386.is_none() {
        let only64 = e.write(
            "only64.json",
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"]}"#,
        );
        let opt64 = format!("seccomp={only64}");
        let (code, out, err) = e.run(
            &["--security-opt", &opt64],
            &["sh", "-c", "/sys32/mkdir; echo $?"],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), "159", "an unlisted ABI must be killed");
        let (_, out, _) = e.run(
            &["--security-opt", &opt64],
            &["sh", "-c", "/sys64/unshare; echo $?"],
        );
        assert_eq!(out.trim(), "0", "the listed ABI runs");
    }
    // The control: mkdir works without the profile.
    let (code, _, err) = e.run(&[], &["mkdir", "/tmp/x"]);
    assert_eq!(code, 0, "{err}");
    // exec'd processes get the container's filter.
    e.ok(&[
        "run",
        "-d",
        "--name",
        "sec-d",
        "--security-opt",
        &opt,
        "sec",
        "sleep",
        "30",
    ]);
    let out = e.strata(&["exec", "sec-d", "mkdir", "/tmp/y"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"));
    let st = e.ok(&["exec", "sec-d", "grep", "^Seccomp:", "/proc/self/status"]);
    assert_eq!(st.trim(), "Seccomp:\t2");
    e.ok(&["rm", "-f", "sec-d"]);
    // The default filter in exec: unshare -U refused.
    e.ok(&["run", "-d", "--name", "sec-d", "sec", "sleep", "30"]);
    let out = e.strata(&["exec", "sec-d", "unshare", "-U", "true"]);
    assert!(!out.status.success(), "exec unshare -U must be refused");
    e.ok(&["rm", "-f", "sec-d"]);
}

#[test]
fn invalid_profiles_and_options_fail_in_one_line_creating_nothing() {
    let e = Env::new();
    let cases = [
        (e.write("a.json", "{ not json"), "invalid seccomp profile"),
        (
            e.write("b.json", r#"{"defaultAction":"SCMP_ACT_NOPE"}"#),
            "unknown action \"SCMP_ACT_NOPE\"",
        ),
        (
            e.write(
                "c.json",
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_BOGUS"}]}]}"#,
            ),
            "unknown op \"SCMP_CMP_BOGUS\"",
        ),
        (
            e.write(
                "d.json",
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#,
            ),
            "unknown architecture \"SCMP_ARCH_VAX\"",
        ),
        (e.dir.join("missing.json").display().to_string(), "cannot read the seccomp profile"),
    ];
    for (file, want) in cases {
        let (code, _, err) = e.run(&["--security-opt", &format!("seccomp={file}")], &["true"]);
        assert_ne!(code, 0, "{file}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "{want}: {err}");
    }
    for (opt, want) in [
        ("apparmor=docker-default", "AppArmor"),
        ("label=type:svirt_t", "SELinux"),
        ("bogus=1", "unknown --security-opt"),
        ("no-new-privileges=maybe", "use true or false"),
    ] {
        let (code, _, err) = e.run(&["--security-opt", opt], &["true"]);
        assert_ne!(code, 0, "{opt}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(want), "{opt}: {err}");
    }
    assert_eq!(e.containers(), 0, "a refused run must create nothing");
    // What docker accepts where the LSM is absent: accepted, nothing to do.
    for opt in ["label=disable", "apparmor=unconfined"] {
        let (code, _, err) = e.run(&["--security-opt", opt], &["true"]);
        assert_eq!(code, 0, "{opt}: {err}");
    }
    // no-new-privileges: strata's default is set; =false gives docker's default.
    let nnp = "awk '/^NoNewPrivs/ {print $2}' /proc/self/status";
    for (opts, want) in [
        (vec![], "1"),
        (vec!["--security-opt", "no-new-privileges"], "1"),
        (vec!["--security-opt", "no-new-privileges=true"], "1"),
        (vec!["--security-opt", "no-new-privileges=false"], "0"),
    ] {
        let (code, out, err) = e.run(&opts, &["sh", "-c", nnp]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), want, "{opts:?}");
    }
}

#[test]
fn a_rootless_container_cannot_read_the_invoking_environment() {
    let user = "strata-rootless";
    ensure_user(user);
    common::rootless_devices();
    let e = Env::new();
    let home = e.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::copy(e.dir.join("sec.tar"), home.join("img.tar")).unwrap();
    let st = Command::new("chown")
        .args(["-R", user])
        .arg(&home)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::set_permissions(&e.dir, PermissionsExt::from_mode(0o755)).unwrap();
    let rootless = |args: &[&str]| {
        let out = Command::new("setpriv")
            .args(["--reuid", user, "--regid", user, "--init-groups", "env"])
            .arg(format!("HOME={}", home.display()))
            .arg(format!("XDG_DATA_HOME={}", home.join("data").display()))
            .arg("STRATA_TEST_SECRET=hunter2")
            .arg(strata_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = rootless(&["import", home.join("img.tar").to_str().unwrap(), "sec"]);
    assert_eq!(code, 0, "{err}");
    // Every process of the container, init included; /proc/self still works.
    let script = "for p in /proc/[0-9]*; do cat $p/environ 2>/dev/null; done | grep -a -c STRATA_TEST_SECRET; \
                  grep -a -c PATH= /proc/self/environ";
    let (code, out, err) = rootless(&["run", "--rm", "sec", "sh", "-c", script]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "0\n1\n",
        "the host environment leaked (or /proc/self broke)"
    );
    // The same through exec (whose own strata process also stays in the container).
    let (code, _, err) = rootless(&["run", "-d", "--name", "rl-env", "sec", "sleep", "30"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = rootless(&["exec", "rl-env", "sh", "-c", script]);
    let _ = rootless(&["rm", "-f", "rl-env"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "0\n1\n", "exec: the host environment leaked");
}
