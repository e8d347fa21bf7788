//! The Dockerfile language: parser directives, logical lines, heredocs, per-instruction
//! arguments and docker's word expansion. Pure logic: nothing here touches the system.
//!
//! Values are kept as written (quotes and `$` references included) wherever docker expands
//! them at build time with the environment of the stage; the engine calls [`expand`] or
//! [`expand_words`] on them.

mod expand;
mod instructions;
mod lexer;

pub use expand::{expand, expand_heredoc, expand_words};

use crate::err;
use crate::util::Result;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The escape character (`\` or `` ` `` from `# escape=`).
    pub escape: char,
    /// The `# syntax=` directive, if any (recorded, not acted on).
    pub syntax: Option<String>,
    /// ARGs before the first FROM: name and unexpanded default.
    pub global_args: Vec<(String, Option<String>)>,
    /// The build stages in order.
    pub stages: Vec<Stage>,
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Position among the stages, from 0 (what `--from=0` names).
    pub index: usize,
    /// The `AS name`, lowercased as docker does.
    pub name: Option<String>,
    /// The base image as written; the engine expands it with the global args.
    pub base: String,
    /// `--platform=` as written (unexpanded).
    pub platform: Option<String>,
    /// The FROM's line (1-based).
    pub line: usize,
    /// The FROM instruction as written.
    pub text: String,
    /// The instructions after FROM.
    pub instructions: Vec<Instruction>,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Its first line (1-based).
    pub line: usize,
    /// The instruction as written, continuations joined (what history's CREATED BY shows).
    pub text: String,
    /// What it says.
    pub kind: Kind,
}

/// A command: shell form (run by the stage's SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// The command line as written, given to the shell.
    Shell(String),
    /// The argv from the JSON array.
    Exec(Vec<String>),
}

/// A here-document (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed (`EOF`).
    pub name: String,
    /// The lines between the instruction and the delimiter, each ending in `\n`, as written
    /// (leading tabs kept even with `<<-`: see [`Heredoc::content`]).
    pub body: String,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no expansion of the body.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body's lines and from the delimiter line.
    pub strip_tabs: bool,
    /// For RUN: true when the command is only this heredoc (`RUN <<EOF`), so the body is
    /// the script; false when the heredoc is a redirection inside a larger command
    /// (`RUN python3 <<EOF`: the body is the command's stdin, as the shell sees it). For
    /// COPY/ADD always false (the body is a file's content).
    pub script: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), if any.
    pub fd: Option<u32>,
}

impl Heredoc {
    /// The body with `<<-` applied (leading tabs removed from every line).
    pub fn content(&self) -> String {
        if !self.strip_tabs {
            return self.body.clone();
        }
        self.body
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// The shell command of a RUN whose heredocs are redirections (`RUN python3 <<EOF`, any
/// heredoc with `script == false`), reconstituted as buildkit does: the command line, then
/// each body and its delimiter on the following lines, for `SHELL + [command]`. (A script
/// heredoc, `RUN <<EOF`, runs its [`Heredoc::content`] instead: with the shell, or directly
/// when it starts with `#!`.)
pub fn heredoc_command(cmd: &str, heredocs: &[Heredoc]) -> String {
    let mut full = cmd.to_string();
    for h in heredocs {
        full.push('\n');
        full.push_str(&h.content());
        full.push_str(&h.name);
    }
    full
}

/// The arguments of COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopySpec {
    /// The source paths or URLs as written (unexpanded), heredoc sources removed.
    pub sources: Vec<String>,
    /// The destination as written.
    pub dest: String,
    /// `--from=` (COPY only): a stage name or index, or an image.
    pub from: Option<String>,
    /// `--chown=`.
    pub chown: Option<String>,
    /// `--chmod=`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// Heredoc sources (`COPY <<EOF /file`): each becomes a file named after the delimiter.
    pub heredocs: Vec<Heredoc>,
    /// `--exclude=` patterns (may be given several times).
    pub exclude: Vec<String>,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--checksum=` (ADD only).
    pub checksum: Option<String>,
    /// True when written as a JSON array.
    pub json: bool,
}

/// A HEALTHCHECK, as docker stores it in the image config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// None = `HEALTHCHECK NONE` (disable); `["CMD-SHELL", cmd]` or `["CMD", args..]`.
    pub test: Option<Vec<String>>,
    /// `--interval` in nanoseconds.
    pub interval: Option<u64>,
    /// `--timeout` in nanoseconds.
    pub timeout: Option<u64>,
    /// `--start-period` in nanoseconds.
    pub start_period: Option<u64>,
    /// `--start-interval` in nanoseconds.
    pub start_interval: Option<u64>,
    /// `--retries`.
    pub retries: Option<u32>,
}

/// What an instruction says. Strings are as written (unexpanded) unless noted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// RUN: the command, its heredocs, `--mount=` specs, `--network=`, `--security=`.
    Run {
        /// The command.
        cmd: Cmd,
        /// Heredocs named on the line, in order.
        heredocs: Vec<Heredoc>,
        /// `--mount=` values as written.
        mounts: Vec<String>,
        /// `--network=`.
        network: Option<String>,
        /// `--security=`.
        security: Option<String>,
    },
    /// COPY.
    Copy(CopySpec),
    /// ADD.
    Add(CopySpec),
    /// ENV pairs; keys and values are raw words (quotes kept): expand each with [`expand`].
    Env(Vec<(String, String)>),
    /// ARG names and raw defaults (expand the defaults with [`expand`]).
    Arg(Vec<(String, Option<String>)>),
    /// WORKDIR.
    Workdir(String),
    /// USER.
    User(String),
    /// CMD.
    Cmd(Cmd),
    /// ENTRYPOINT.
    Entrypoint(Cmd),
    /// EXPOSE ports (`80`, `53/udp`).
    Expose(Vec<String>),
    /// LABEL pairs; keys and values are raw words like ENV's.
    Label(Vec<(String, String)>),
    /// VOLUME paths.
    Volume(Vec<String>),
    /// STOPSIGNAL.
    StopSignal(String),
    /// HEALTHCHECK.
    Healthcheck(Health),
    /// SHELL (always the JSON form).
    Shell(Vec<String>),
    /// ONBUILD: the trigger instruction text as docker stores it in the image config
    /// (heredoc bodies appended); parse it with [`parse_instruction_line`].
    Onbuild(String),
    /// MAINTAINER (deprecated): the image's author.
    Maintainer(String),
    /// FROM (only from [`parse_instruction_line`]; [`parse`] makes stages of them).
    From {
        /// The image as written.
        base: String,
        /// `AS name`, lowercased.
        name: Option<String>,
        /// `--platform=`.
        platform: Option<String>,
    },
}

/// Parse a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let (dir, start) = lexer::directives(&lines)?;
    let logical = lexer::logical_lines(&lines, start, dir.escape)?;
    if logical.is_empty() {
        return Err(err!("Dockerfile: file with no instructions"));
    }
    let mut df = Dockerfile {
        escape: dir.escape,
        syntax: dir.syntax,
        global_args: Vec::new(),
        stages: Vec::new(),
    };
    for l in logical {
        let ins = instructions::parse(&l, dir.escape)?;
        match ins.kind {
            Kind::From {
                base,
                name,
                platform,
            } => df.stages.push(Stage {
                index: df.stages.len(),
                name,
                base,
                platform,
                line: ins.line,
                text: ins.text,
                instructions: Vec::new(),
            }),
            kind => match df.stages.last_mut() {
                Some(stage) => stage.instructions.push(Instruction { kind, ..ins }),
                None => match kind {
                    Kind::Arg(args) => df.global_args.extend(args),
                    _ => {
                        return Err(err!(
                            "Dockerfile:{}: no build stage in current context",
                            ins.line
                        ))
                    }
                },
            },
        }
    }
    if df.stages.is_empty() {
        return Err(err!("Dockerfile: no build stage in current context"));
    }
    Ok(df)
}

/// Parse one instruction (with its heredoc bodies after it, if any): an ONBUILD trigger
/// from a base image's config, run with the escape character of the Dockerfile.
pub fn parse_instruction_line(text: &str, escape: char) -> Result<Instruction> {
    let lines: Vec<&str> = text.lines().collect();
    let mut logical = lexer::logical_lines(&lines, 0, escape)?;
    if logical.len() != 1 {
        return Err(err!(
            "Dockerfile: expected one instruction, found {}: {text:?}",
            logical.len()
        ));
    }
    let l = logical.remove(0);
    instructions::parse(&l, escape)
}

/// COPY/ADD options the engine does not apply yet: refused before anything runs, so a
/// build never silently makes an image that differs from docker's.
pub fn unsupported(spec: &CopySpec, add: bool) -> Result<()> {
    if add && spec.sources.iter().any(|s| s.contains("://")) {
        return Err(err!(
            "remote sources (URLs, git) need the network, which strata build does not give ADD: \
             download the file into the context and ADD or COPY it"
        ));
    }
    for (set, flag) in [
        (!spec.exclude.is_empty(), "--exclude"),
        (spec.parents, "--parents"),
        (spec.checksum.is_some(), "--checksum"),
    ] {
        if set {
            return Err(err!("{flag} is not supported by strata build yet"));
        }
    }
    Ok(())
}
