//! The seccomp filter of a container's processes, compiled by libseccomp from a profile in
//! docker's format (`seccomp_profile`): rules resolved for the container's capabilities,
//! the host's architecture and the running kernel, as docker does. Every architecture the
//! host runs (x86_64 with x86 and x32, from the profile's archMap) is filtered, and a
//! syscall from any other architecture kills the process: a filter that let an unlisted ABI
//! through would let its syscall numbers bypass every rule.

use std::collections::HashSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};

use crate::err;
use crate::isolation::seccomp_profile::{parse_kernel, Arg, Filter, Profile, Rule};
use crate::util::Result;

/// The host's architecture: libseccomp's token, its `SCMP_ARCH_*` name and docker's
/// (Go's) name, which `includes.arches` use.
fn native() -> (ScmpArch, &'static str, &'static str) {
    let a = ScmpArch::native();
    let (scmp, go) = match a {
        ScmpArch::X8664 => ("SCMP_ARCH_X86_64", "amd64"),
        ScmpArch::X86 => ("SCMP_ARCH_X86", "386"),
        ScmpArch::Aarch64 => ("SCMP_ARCH_AARCH64", "arm64"),
        ScmpArch::Arm => ("SCMP_ARCH_ARM", "arm"),
        ScmpArch::Ppc64Le => ("SCMP_ARCH_PPC64LE", "ppc64le"),
        ScmpArch::S390X => ("SCMP_ARCH_S390X", "s390x"),
        ScmpArch::S390 => ("SCMP_ARCH_S390", "s390"),
        ScmpArch::Riscv64 => ("SCMP_ARCH_RISCV64", "riscv64"),
        ScmpArch::Mips64 => ("SCMP_ARCH_MIPS64", "mips64"),
        ScmpArch::Mipsel64 => ("SCMP_ARCH_MIPSEL64", "mips64le"),
        ScmpArch::Loongarch64 => ("SCMP_ARCH_LOONGARCH64", "loong64"),
        _ => ("", ""),
    };
    (a, scmp, go)
}

fn kernel() -> (u32, u32) {
    nix::sys::utsname::uname()
        .ok()
        .and_then(|u| parse_kernel(&u.release().to_string_lossy()))
        .unwrap_or((0, 0))
}

/// What the includes/excludes of a rule are checked against.
struct Host<'a> {
    caps: &'a HashSet<String>,
    arch: &'static str,
    kernel: (u32, u32),
}

impl Host<'_> {
    fn at_least(&self, v: &Option<String>) -> Option<bool> {
        v.as_deref()
            .and_then(parse_kernel)
            .map(|min| self.kernel >= min)
    }
    /// docker's rule: every `includes` condition holds and no `excludes` one does.
    fn applies(&self, inc: &Filter, exc: &Filter) -> bool {
        let has_cap = |c: &String| self.caps.contains(c);
        let arch = |a: &String| a == self.arch;
        inc.caps.iter().all(has_cap)
            && (inc.arches.is_empty() || inc.arches.iter().any(arch))
            && self.at_least(&inc.min_kernel) != Some(false)
            && !exc.caps.iter().any(has_cap)
            && !exc.arches.iter().any(arch)
            && self.at_least(&exc.min_kernel) != Some(true)
    }
}

fn action(name: &str, errno: Option<u32>) -> Result<ScmpAction> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(errno.min(u16::MAX as u32) as i32),
        "SCMP_ACT_TRACE" => ScmpAction::Trace(errno.min(u16::MAX as u32) as u16),
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        other => return Err(err!("unsupported seccomp action {other}")),
    })
}

fn compare(a: &Arg) -> ScmpArgCompare {
    let op = match a.op.as_str() {
        "SCMP_CMP_NE" => ScmpCompareOp::NotEqual,
        "SCMP_CMP_LT" => ScmpCompareOp::Less,
        "SCMP_CMP_LE" => ScmpCompareOp::LessOrEqual,
        "SCMP_CMP_GE" => ScmpCompareOp::GreaterEqual,
        "SCMP_CMP_GT" => ScmpCompareOp::Greater,
        "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(a.value),
        _ => ScmpCompareOp::Equal,
    };
    let datum = match op {
        ScmpCompareOp::MaskedEqual(_) => a.value_two,
        _ => a.value,
    };
    ScmpArgCompare::new(a.index, op, datum)
}

fn add_rule(f: &mut ScmpFilterContext, r: &Rule, default: ScmpAction) -> Result<()> {
    let act = action(&r.action, r.errno_ret)?;
    if act == default {
        // libseccomp refuses a rule that repeats the default; it would change nothing.
        return Ok(());
    }
    let cmps: Vec<ScmpArgCompare> = r.args.iter().map(compare).collect();
    // Conditions on distinct arguments must all hold (one rule); several on the same
    // argument are alternatives (one rule each), as docker reads them.
    let mut idx: Vec<u32> = r.args.iter().map(|a| a.index).collect();
    idx.sort_unstable();
    idx.dedup();
    let groups: Vec<Vec<ScmpArgCompare>> = if idx.len() == cmps.len() {
        vec![cmps]
    } else {
        cmps.into_iter().map(|c| vec![c]).collect()
    };
    for name in &r.names {
        // Names this libseccomp does not know (newer syscalls) are skipped, as docker does.
        let Ok(sys) = ScmpSyscall::from_name(name) else {
            continue;
        };
        for g in &groups {
            let res = if g.is_empty() {
                f.add_rule(act, sys)
            } else {
                f.add_rule_conditional(act, sys, g)
            };
            res.map_err(|e| err!("cannot add the seccomp rule for {name}: {e}"))?;
        }
    }
    Ok(())
}

/// Compile `p` for a container whose bounding set is `caps` (`CAP_*` names).
pub fn build(p: &Profile, caps: &HashSet<String>) -> Result<ScmpFilterContext> {
    let (arch, scmp_name, go_name) = native();
    let default = action(&p.default_action, p.default_errno_ret)?;
    let e = |e: libseccomp::error::SeccompError| err!("cannot build the seccomp filter: {e}");
    let mut f = ScmpFilterContext::new(default).map_err(e)?;
    // Anything from an architecture the filter does not list is killed, never allowed.
    f.set_act_badarch(ScmpAction::KillProcess).map_err(e)?;
    // no_new_privs is strata's decision (--security-opt no-new-privileges), not libseccomp's.
    f.set_ctl_nnp(false).map_err(e)?;
    let mut arches: Vec<&String> = p.architectures.iter().collect();
    for m in p.arch_map.iter().filter(|m| m.architecture == scmp_name) {
        arches.push(&m.architecture);
        arches.extend(&m.sub_architectures);
    }
    for name in arches {
        let a: ScmpArch = name
            .parse()
            .map_err(|_| err!("unknown seccomp architecture {name}"))?;
        if a != arch && !f.is_arch_present(a).map_err(e)? {
            f.add_arch(a).map_err(e)?;
        }
    }
    let host = Host {
        caps,
        arch: go_name,
        kernel: kernel(),
    };
    for r in p
        .syscalls
        .iter()
        .filter(|r| host.applies(&r.includes, &r.excludes))
    {
        add_rule(&mut f, r, default)?;
    }
    Ok(f)
}

/// The BPF program of `p` for capabilities `caps` (`p` parsed from `text`), from the cache
/// directory `dir` when an earlier start compiled the same one, else compiled and cached.
/// The key covers everything the compilation reads (profile, capabilities, kernel,
/// architecture, libseccomp and strata versions); an entry is checked against its own
/// digest, and a bad one is compiled again.
pub fn compiled(dir: &Path, text: &str, p: &Profile, caps: &HashSet<String>) -> Result<Vec<u8>> {
    let mut names: Vec<&String> = caps.iter().collect();
    names.sort();
    let v = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let key = hex(&Sha256::digest(
        format!(
            "{}\n{v}\n{release}\n{}\n{names:?}\n{text}",
            env!("CARGO_PKG_VERSION"),
            native().1
        )
        .as_bytes(),
    ));
    let path = dir.join(format!("{key}.bpf"));
    if let Ok(b) = std::fs::read(&path) {
        if b.len() > 32 && b[..32] == Sha256::digest(&b[32..])[..] {
            return Ok(b[32..].to_vec());
        }
    }
    let f = build(p, caps)?;
    let tmp = tempfile_in(dir)?;
    f.export_bpf(tmp.as_file())
        .map_err(|e| err!("cannot compile the seccomp filter: {e}"))?;
    let prog =
        std::fs::read(tmp.path()).map_err(|e| err!("cannot read the seccomp filter: {e}"))?;
    let mut entry = Sha256::digest(&prog).to_vec();
    entry.extend_from_slice(&prog);
    // A cache that cannot be written costs the next start a compilation, nothing more.
    let _ = crate::util::write_atomic(&path, &entry);
    Ok(prog)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A scratch file in `dir` (created as needed), removed on drop.
struct Scratch(std::fs::File, std::path::PathBuf);
impl Scratch {
    fn as_file(&self) -> &std::fs::File {
        &self.0
    }
    fn path(&self) -> &Path {
        &self.1
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
    }
}

fn tempfile_in(dir: &Path) -> Result<Scratch> {
    std::fs::create_dir_all(dir).map_err(|e| err!("cannot create {}: {e}", dir.display()))?;
    let p = dir.join(format!(".compile.{}", std::process::id()));
    let f = std::fs::File::create(&p).map_err(|e| err!("cannot create {}: {e}", p.display()))?;
    Ok(Scratch(f, p))
}

/// Install a program [`compiled`] made on the calling thread (needs no_new_privs or
/// CAP_SYS_ADMIN).
pub fn load_compiled(prog: &[u8]) -> Result<()> {
    strata_sys::seccomp::set_filter(prog)
        .map_err(|e| err!("cannot install the seccomp filter: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolation::seccomp_profile::{parse, DEFAULT_JSON};

    #[test]
    fn compiled_programs_are_cached_and_a_bad_entry_is_compiled_again() {
        let p = parse(DEFAULT_JSON, "default").unwrap();
        let caps: HashSet<String> = ["CAP_CHOWN".to_string()].into();
        let dir = std::env::temp_dir().join(format!("strata-bpf-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = compiled(&dir, DEFAULT_JSON, &p, &caps).unwrap();
        assert!(!first.is_empty() && first.len().is_multiple_of(8));
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(entries.len(), 1, "one entry, no scratch file left");
        assert_eq!(compiled(&dir, DEFAULT_JSON, &p, &caps).unwrap(), first);
        // Another capability set is another program.
        let more: HashSet<String> = ["CAP_CHOWN".to_string(), "CAP_SYS_ADMIN".to_string()].into();
        assert_ne!(compiled(&dir, DEFAULT_JSON, &p, &more).unwrap(), first);
        // A damaged entry is not trusted.
        let path = entries[0].path();
        let mut b = std::fs::read(&path).unwrap();
        let last = b.len() - 1;
        b[last] ^= 0xff;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(compiled(&dir, DEFAULT_JSON, &p, &caps).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_profile_compiles_for_every_host_arch() {
        let p = parse(DEFAULT_JSON, "default").unwrap();
        let caps: HashSet<String> = ["CAP_CHOWN".to_string()].into();
        let f = build(&p, &caps).unwrap();
        if ScmpArch::native() == ScmpArch::X8664 {
            assert!(f.is_arch_present(ScmpArch::X86).unwrap());
            assert!(f.is_arch_present(ScmpArch::X32).unwrap());
        }
        let out = std::env::temp_dir().join(format!("strata-bpf-{}", std::process::id()));
        f.export_bpf(std::fs::File::create(&out).unwrap()).unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
        std::fs::remove_file(&out).unwrap();
    }
}
