//! Per-instruction argument parsing: `--flags`, exec (JSON) or shell form, key=value lists,
//! FROM, COPY/ADD, HEALTHCHECK, ONBUILD — with docker's error messages.

use super::lexer::{self, Logical};
use super::{Cmd, CopySpec, Health, Instruction, Kind};
use crate::err;
use crate::util::Result;

/// Parse one logical line into an instruction.
pub(super) fn parse(l: &Logical, escape: char) -> Result<Instruction> {
    let at = |e: String| err!("Dockerfile:{}: {e}", l.line);
    let (word, rest) = split_first(&l.text);
    let name = word.to_ascii_lowercase();
    let (rest, flags) = extract_flags(rest);
    let mut flags = Flags::new(&name, flags);
    if !KNOWN.contains(&name.as_str()) {
        // Named as written, like docker.
        return Err(at(format!("unknown instruction: {word}")));
    }
    let kind = instruction(&name, rest, &mut flags, l, escape).map_err(|e| at(e.0))?;
    flags.check_all_used().map_err(at)?;
    Ok(Instruction {
        line: l.line,
        text: l.text.clone(),
        kind,
    })
}

/// The instructions of the Dockerfile language, lowercased.
const KNOWN: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

fn split_first(s: &str) -> (&str, &str) {
    let s = s.trim();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn instruction(
    name: &str,
    rest: &str,
    flags: &mut Flags,
    l: &Logical,
    escape: char,
) -> Result<Kind> {
    let upper = name.to_ascii_uppercase();
    let one = |s: &str| match s.is_empty() {
        true => Err(err!("{upper} requires exactly one argument")),
        false => Ok(s.to_string()),
    };
    Ok(match name {
        "from" => {
            let platform = flags.string("platform")?;
            let words: Vec<&str> = rest.split_whitespace().collect();
            let name = match words.as_slice() {
                [_] => None,
                [_, as_, n] if as_.eq_ignore_ascii_case("as") => Some(stage_name(n)?),
                [_, _, _] => return Err(err!("FROM requires either one or three arguments")),
                _ => return Err(err!("FROM requires either one or three arguments")),
            };
            Kind::From {
                base: words[0].to_string(),
                name,
                platform,
            }
        }
        "run" => {
            let mounts = flags.strings("mount");
            let network = flags.string("network")?;
            let security = flags.string("security")?;
            if rest.is_empty() {
                return Err(err!("RUN requires at least one argument"));
            }
            let cmd = maybe_json(rest)?;
            let mut heredocs = l.heredocs.clone();
            if let (Cmd::Shell(s), [h]) = (&cmd, heredocs.as_mut_slice()) {
                h.script = lexer::heredoc_marker(s.trim(), escape).is_some()
                    && !s.trim().contains(char::is_whitespace);
            }
            Kind::Run {
                cmd,
                heredocs,
                mounts,
                network,
                security,
            }
        }
        "copy" | "add" => Kind::Copy(copy_spec(name, rest, flags, l, escape)?),
        "env" | "label" => {
            let pairs = name_vals(&upper, rest, escape)?;
            match name {
                "env" => Kind::Env(pairs),
                _ => Kind::Label(pairs),
            }
        }
        "arg" => {
            let words = lexer::raw_words(rest, escape);
            if words.is_empty() {
                return Err(err!("ARG requires at least one argument"));
            }
            let args = words
                .into_iter()
                .map(|w| match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w, None),
                })
                .collect::<Vec<_>>();
            if args.iter().any(|(k, _)| k.is_empty()) {
                return Err(err!("ARG names can not be blank"));
            }
            Kind::Arg(args)
        }
        "workdir" => Kind::Workdir(one(rest)?),
        "user" => Kind::User(one(rest)?),
        "stopsignal" => Kind::StopSignal(one(rest)?),
        "maintainer" => Kind::Maintainer(one(rest)?),
        "cmd" => Kind::Cmd(maybe_json(rest)?),
        "entrypoint" => Kind::Entrypoint(maybe_json(rest)?),
        "shell" => match maybe_json(rest)? {
            Cmd::Exec(v) if v.is_empty() => {
                return Err(err!("SHELL requires at least one argument"))
            }
            Cmd::Exec(v) => Kind::Shell(v),
            Cmd::Shell(_) => return Err(err!("SHELL requires the arguments to be in JSON form")),
        },
        "expose" => {
            let ports: Vec<String> = rest.split_whitespace().map(String::from).collect();
            if ports.is_empty() {
                return Err(err!("EXPOSE requires at least one argument"));
            }
            Kind::Expose(ports)
        }
        "volume" => {
            let (v, _) = json_or_words(rest)?;
            if v.is_empty() {
                return Err(err!("VOLUME requires at least one argument"));
            }
            if v.iter().any(|p| p.trim().is_empty()) {
                return Err(err!("VOLUME specified can not be an empty string"));
            }
            Kind::Volume(v)
        }
        "healthcheck" => Kind::Healthcheck(health(rest, flags)?),
        "onbuild" => {
            let (trigger, _) = split_first(rest);
            let t = trigger.to_ascii_uppercase();
            match t.as_str() {
                "" => return Err(err!("ONBUILD requires at least one argument")),
                "ONBUILD" => {
                    return Err(err!("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"))
                }
                "FROM" | "MAINTAINER" => {
                    return Err(err!("{t} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let mut text = rest.to_string();
            for h in &l.heredocs {
                text.push('\n');
                text.push_str(&h.body);
                text.push_str(&h.name);
            }
            // The trigger must itself be a valid instruction.
            let sub = Logical {
                line: l.line,
                text: rest.to_string(),
                heredocs: l.heredocs.clone(),
            };
            parse(&sub, escape).map_err(|e| {
                let prefix = format!("Dockerfile:{}: ", l.line);
                err!("{}", e.0.strip_prefix(&prefix).unwrap_or(&e.0))
            })?;
            Kind::Onbuild(text)
        }
        _ => return Err(err!("unknown instruction: {}", upper)),
    })
    .map(|k| match (name, k) {
        ("add", Kind::Copy(c)) => Kind::Add(c),
        (_, k) => k,
    })
}

/// A stage name after AS: lowercased, `[a-z][a-z0-9-_.]*`.
fn stage_name(n: &str) -> Result<String> {
    let n = n.to_ascii_lowercase();
    let ok = n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    match ok {
        true => Ok(n),
        false => Err(err!(
            "invalid name for build stage: {n:?}, name can't start with a number or contain symbols"
        )),
    }
}

/// Exec form when `rest` is a JSON array of strings, else the shell form.
fn maybe_json(rest: &str) -> Result<Cmd> {
    match json_array(rest)? {
        Some(v) => Ok(Cmd::Exec(v)),
        None => Ok(Cmd::Shell(rest.to_string())),
    }
}

/// A JSON array at the start of `rest` (as Go's json.Decoder reads the first value);
/// `Ok(None)` when it is not JSON; an error when it is an array of non-strings.
fn json_array(rest: &str) -> Result<Option<Vec<String>>> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    match stream.next() {
        Some(Ok(serde_json::Value::Array(items))) => {
            let strings: Option<Vec<String>> = items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                })
                .collect();
            match strings {
                Some(s) => Ok(Some(s)),
                None => Err(err!(
                    "when using JSON array syntax, arrays must be comprised of strings only"
                )),
            }
        }
        _ => Ok(None),
    }
}

/// JSON array or whitespace-separated words (COPY, ADD, VOLUME); true when JSON.
fn json_or_words(rest: &str) -> Result<(Vec<String>, bool)> {
    Ok(match json_array(rest)? {
        Some(v) => (v, true),
        None => (rest.split_whitespace().map(String::from).collect(), false),
    })
}

/// ENV and LABEL: `k=v k2="v 2"` or the legacy `k v w` (the value is the rest of line).
fn name_vals(key: &str, rest: &str, escape: char) -> Result<Vec<(String, String)>> {
    let words = lexer::raw_words(rest, escape);
    let Some(first) = words.first() else {
        return Err(err!("{key} requires at least one argument"));
    };
    let pairs = if !first.contains('=') {
        let (k, v) = split_first(rest);
        if v.is_empty() {
            return Err(err!("{key} must have two arguments"));
        }
        vec![(k.to_string(), v.to_string())]
    } else {
        let mut pairs = Vec::new();
        for w in &words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(err!(
                    "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                ));
            };
            pairs.push((k.to_string(), v.to_string()));
        }
        pairs
    };
    if pairs.iter().any(|(k, _)| k.is_empty()) {
        return Err(err!("{key} names can not be blank"));
    }
    Ok(pairs)
}

fn copy_spec(
    name: &str,
    rest: &str,
    flags: &mut Flags,
    l: &Logical,
    escape: char,
) -> Result<CopySpec> {
    let mut spec = CopySpec {
        chown: flags.string("chown")?,
        chmod: flags.string("chmod")?,
        link: flags.bool("link")?,
        exclude: flags.strings("exclude"),
        ..CopySpec::default()
    };
    if name == "copy" {
        spec.from = flags.string("from")?;
        spec.parents = flags.bool("parents")?;
    } else {
        spec.keep_git_dir = flags.bool("keep-git-dir")?;
        spec.checksum = flags.string("checksum")?;
    }
    let (mut words, json) = json_or_words(rest)?;
    spec.json = json;
    let upper = name.to_ascii_uppercase();
    match words.len() {
        0 => return Err(err!("{upper} requires at least two arguments")),
        1 if l.heredocs.is_empty() => {
            return Err(err!(
                "{upper} requires at least two arguments, but only one was provided. Destination could not be determined."
            ))
        }
        _ => {}
    }
    spec.dest = words.pop().unwrap_or_default();
    for w in words {
        let marker = match json {
            true => None,
            false => lexer::heredoc_marker(&w, escape),
        };
        match marker.and_then(|m| l.heredocs.iter().find(|h| h.name == m.name)) {
            Some(h) => spec.heredocs.push(h.clone()),
            None => spec.sources.push(w),
        }
    }
    Ok(spec)
}

fn health(rest: &str, flags: &mut Flags) -> Result<Health> {
    let mut h = Health {
        interval: flags.duration("interval")?,
        timeout: flags.duration("timeout")?,
        start_period: flags.duration("start-period")?,
        start_interval: flags.duration("start-interval")?,
        ..Health::default()
    };
    if let Some(r) = flags.string("retries")? {
        let n: i64 = r
            .parse()
            .map_err(|_| err!("strconv.ParseInt: parsing {r:?}: invalid syntax"))?;
        if n < 0 {
            return Err(err!("--retries cannot be negative ({n})"));
        }
        h.retries = Some(u32::try_from(n).map_err(|_| err!("--retries {n} is too large"))?);
    }
    let (typ, cmd) = split_first(rest);
    match typ.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !cmd.is_empty() {
                return Err(err!("HEALTHCHECK NONE takes no arguments"));
            }
            let any_flag = h.interval.is_some()
                || h.timeout.is_some()
                || h.start_period.is_some()
                || h.start_interval.is_some()
                || h.retries.is_some();
            if any_flag {
                return Err(err!("HEALTHCHECK NONE takes no arguments"));
            }
        }
        "CMD" => {
            if cmd.is_empty() {
                return Err(err!("Missing command after HEALTHCHECK CMD"));
            }
            h.test = Some(match maybe_json(cmd)? {
                Cmd::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
                Cmd::Shell(s) => vec!["CMD-SHELL".to_string(), s],
            });
        }
        "" => return Err(err!("HEALTHCHECK requires at least one argument")),
        other => return Err(err!("Unknown type {other:?} in HEALTHCHECK (try CMD)")),
    }
    Ok(h)
}

/// Leading `--name[=value]` words (buildkit's extractBuilderFlags): quotes removed, `\`
/// escapes the next character, a bare `--` ends the flags. Returns the rest of the line.
fn extract_flags(line: &str) -> (&str, Vec<String>) {
    let mut flags = Vec::new();
    let mut pos = 0;
    let b = line.as_bytes();
    loop {
        while pos < b.len() && (b[pos] as char).is_ascii_whitespace() {
            pos += 1;
        }
        if !line[pos..].starts_with("--") {
            return (&line[pos..], flags);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut chars = line[pos..].char_indices();
        let mut end = line.len();
        while let Some((i, c)) = chars.next() {
            match quote {
                None if c.is_whitespace() => {
                    end = pos + i;
                    break;
                }
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == '\\' => word.extend(chars.next().map(|(_, n)| n)),
                _ => word.push(c),
            }
        }
        pos = end;
        if word == "--" {
            return (line[pos..].trim_start(), flags);
        }
        flags.push(word);
        if pos >= line.len() {
            return ("", flags);
        }
    }
}

/// The flags of one instruction; each is taken by name, and any left over is unknown.
struct Flags {
    given: Vec<(String, Option<String>, bool)>,
}

impl Flags {
    fn new(_instruction: &str, words: Vec<String>) -> Self {
        let given = words
            .into_iter()
            .map(|w| {
                let w = w.trim_start_matches('-').to_string();
                match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string()), false),
                    None => (w, None, false),
                }
            })
            .collect();
        Flags { given }
    }

    fn take(&mut self, name: &str) -> Vec<Option<String>> {
        self.given
            .iter_mut()
            .filter(|(k, _, used)| k == name && !used)
            .map(|(_, v, used)| {
                *used = true;
                v.clone()
            })
            .collect()
    }

    fn string(&mut self, name: &str) -> Result<Option<String>> {
        let vals = self.take(name);
        if vals.len() > 1 {
            return Err(err!("Duplicate flag specified: {name}"));
        }
        match vals.into_iter().next() {
            None => Ok(None),
            Some(None) => Err(err!("Missing a value on flag: {name}")),
            Some(Some(v)) => Ok(Some(v)),
        }
    }

    fn strings(&mut self, name: &str) -> Vec<String> {
        self.take(name).into_iter().flatten().collect()
    }

    fn bool(&mut self, name: &str) -> Result<bool> {
        let vals = self.take(name);
        if vals.len() > 1 {
            return Err(err!("Duplicate flag specified: {name}"));
        }
        match vals.into_iter().next() {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(v)) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(Some(v)) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(Some(v)) => Err(err!("expecting boolean value for flag {name}, not: {v}")),
        }
    }

    fn duration(&mut self, name: &str) -> Result<Option<u64>> {
        let Some(v) = self.string(name)? else {
            return Ok(None);
        };
        if v.is_empty() {
            return Ok(Some(0));
        }
        let d = parse_duration(&v)?;
        if d != 0 && d < 1_000_000 {
            return Err(err!("Interval \"{name}\" cannot be less than 1ms"));
        }
        Ok(Some(d))
    }

    fn check_all_used(&self) -> std::result::Result<(), String> {
        match self.given.iter().find(|(_, _, used)| !used) {
            Some((k, _, _)) => Err(format!("unknown flag: {k}")),
            None => Ok(()),
        }
    }
}

/// Go's time.ParseDuration: `1m30s`, `500ms`, `1.5h`, `0`; nanoseconds, negative refused.
pub(super) fn parse_duration(s: &str) -> Result<u64> {
    let bad = || err!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.starts_with('-') {
        return Err(err!("time: negative duration {s:?} is not allowed"));
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err!("time: missing unit in duration {s:?}"))?;
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(err!("time: unknown unit {other:?} in duration {s:?}")),
        };
        total += num * unit;
        rest = &rest[u..];
    }
    if total > u64::MAX as f64 {
        return Err(err!("time: invalid duration {s:?}"));
    }
    Ok(total.round() as u64)
}
