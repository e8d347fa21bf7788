//! docker's JSON seccomp profile format (what `--security-opt seccomp=FILE` reads, and the
//! form strata's own default profile is written in): the types, parsing and the checks that
//! make a bad profile fail at `run`/`create` time, before anything exists.

use serde::Deserialize;

use crate::err;
use crate::util::Result;

/// strata's default profile, docker's default behaviour written in docker's format.
pub const DEFAULT_JSON: &str = include_str!("seccomp_default.json");

/// A whole profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// What a syscall no rule names gets: `SCMP_ACT_ERRNO`, `SCMP_ACT_ALLOW`, ...
    pub default_action: String,
    /// The errno of a default `SCMP_ACT_ERRNO` (EPERM when absent).
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    /// Explicit architectures (`SCMP_ARCH_*`); exclusive with `archMap`.
    #[serde(default)]
    pub architectures: Vec<String>,
    /// Per native architecture, the compat ones to add with it.
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    /// The rules, in order.
    #[serde(default)]
    pub syscalls: Vec<Rule>,
}

/// One `archMap` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    /// The native architecture this entry applies to.
    pub architecture: String,
    /// The compat architectures the native kernel also runs.
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

/// One `syscalls` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// The syscalls (unknown names are skipped, as docker does).
    #[serde(default)]
    pub names: Vec<String>,
    /// The pre-docker-1.13 single name: refused, as docker refuses it.
    #[serde(default)]
    pub name: Option<String>,
    /// `SCMP_ACT_*`.
    pub action: String,
    /// The errno of an `SCMP_ACT_ERRNO` (EPERM when absent).
    #[serde(default)]
    pub errno_ret: Option<u32>,
    /// Argument conditions.
    #[serde(default)]
    pub args: Vec<Arg>,
    /// The rule applies only if all of these hold.
    #[serde(default)]
    pub includes: Filter,
    /// The rule is skipped if any of these holds.
    #[serde(default)]
    pub excludes: Filter,
}

/// One argument condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    /// Argument number, 0..=5.
    pub index: u32,
    /// The value (the mask for `SCMP_CMP_MASKED_EQ`).
    pub value: u64,
    /// The masked value for `SCMP_CMP_MASKED_EQ`.
    #[serde(default)]
    pub value_two: u64,
    /// `SCMP_CMP_EQ`, `SCMP_CMP_NE`, ...
    pub op: String,
}

/// `includes` / `excludes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    /// Capabilities (`CAP_SYS_ADMIN`): the container's bounding set.
    #[serde(default)]
    pub caps: Vec<String>,
    /// docker's architecture names (`amd64`, `arm64`, `386`, ...) of the host.
    #[serde(default)]
    pub arches: Vec<String>,
    /// "4.8": the running kernel's version.
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// The actions docker's format names (`SCMP_ACT_NOTIFY` needs a listener strata has not).
pub const ACTIONS: [&str; 9] = [
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];

/// The comparison operators.
pub const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

/// Parse and check a profile; `what` names it in errors (a file name).
pub fn parse(text: &str, what: &str) -> Result<Profile> {
    let p: Profile = serde_json::from_str(text).map_err(|e| {
        err!("invalid seccomp profile {what}: {e} (docker's JSON profile format expected)")
    })?;
    check(&p).map_err(|e| err!("invalid seccomp profile {what}: {}", e.0))?;
    Ok(p)
}

fn check_action(a: &str) -> Result<()> {
    if a == "SCMP_ACT_NOTIFY" {
        return Err(err!(
            "SCMP_ACT_NOTIFY needs a listener, which strata does not run"
        ));
    }
    if !ACTIONS.contains(&a) {
        return Err(err!(
            "unknown action {a:?}: use one of {}",
            ACTIONS.join(", ")
        ));
    }
    Ok(())
}

fn check_kernel(k: &Option<String>) -> Result<()> {
    match k {
        Some(v) if parse_kernel(v).is_none() => {
            Err(err!("invalid minKernel {v:?}: use MAJOR.MINOR (\"4.8\")"))
        }
        _ => Ok(()),
    }
}

fn check(p: &Profile) -> Result<()> {
    check_action(&p.default_action)?;
    if !p.architectures.is_empty() && !p.arch_map.is_empty() {
        return Err(err!(
            "both architectures and archMap are given: use one of them"
        ));
    }
    let arches = p.architectures.iter().chain(
        p.arch_map
            .iter()
            .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures)),
    );
    for a in arches {
        a.parse::<libseccomp::ScmpArch>()
            .map_err(|_| err!("unknown architecture {a:?}: use SCMP_ARCH_X86_64 and the like"))?;
    }
    for (i, r) in p.syscalls.iter().enumerate() {
        if let Some(n) = &r.name {
            return Err(err!(
                "syscalls[{i}] uses \"name\": {n:?}, which docker no longer supports: use \"names\": [{n:?}]"
            ));
        }
        if r.names.is_empty() {
            return Err(err!("syscalls[{i}] has no names"));
        }
        check_action(&r.action).map_err(|e| err!("syscalls[{i}]: {}", e.0))?;
        for a in &r.args {
            if a.index > 5 {
                return Err(err!(
                    "syscalls[{i}]: argument index {} is out of range 0..=5",
                    a.index
                ));
            }
            if !OPS.contains(&a.op.as_str()) {
                return Err(err!(
                    "syscalls[{i}]: unknown op {:?}: use one of {}",
                    a.op,
                    OPS.join(", ")
                ));
            }
        }
        check_kernel(&r.includes.min_kernel).map_err(|e| err!("syscalls[{i}]: {}", e.0))?;
        check_kernel(&r.excludes.min_kernel).map_err(|e| err!("syscalls[{i}]: {}", e.0))?;
    }
    Ok(())
}

/// "4.8" or "6.18.0-1-amd64" as (major, minor).
pub fn parse_kernel(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it
        .next()
        .map(|m| {
            m.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_parses() {
        let p = parse(DEFAULT_JSON, "default").unwrap();
        assert_eq!(p.default_action, "SCMP_ACT_ERRNO");
        assert!(p.syscalls[0].names.iter().any(|n| n == "read"));
        assert!(!p.syscalls[0].names.iter().any(|n| n == "keyctl"));
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        let e = parse("{", "x.json").unwrap_err().0;
        assert!(e.starts_with("invalid seccomp profile x.json:"), "{e}");
        let e = parse(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#, "x")
            .unwrap_err()
            .0;
        assert!(e.contains("unknown action"), "{e}");
        let e = parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":7,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
            "x",
        )
        .unwrap_err()
        .0;
        assert!(e.contains("index 7"), "{e}");
        assert_eq!(parse_kernel("6.18.3-amd64"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
    }
}
