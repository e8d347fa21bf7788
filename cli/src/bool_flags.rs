//! docker's boolean flags: every `--flag` also takes `--flag=true` and `--flag=false`
//! (`-d=true` too), while `--rm true` keeps `true` as the next argument (the image), as docker
//! does: the value must be attached with `=`.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Command};

/// [`docker_bools`] for the subcommands `argv` can name only: rewriting the whole tree
/// costs ~3 M instructions, most of a short command's start (a container's FUSE daemon
/// is one). Every word of `argv` that is a subcommand's name or alias at a level has that
/// subcommand rewritten (an option value that happens to be a name costs one extra
/// rewrite, never a missing one); help anywhere rewrites all, for the help text.
pub fn docker_bools_for(cmd: Command, argv: &[std::ffi::OsString]) -> Command {
    let words: Vec<&str> = argv.iter().skip(1).filter_map(|a| a.to_str()).collect();
    if words.iter().any(|w| matches!(*w, "help" | "--help" | "-h")) {
        return docker_bools(cmd);
    }
    rewrite_named(cmd, &words)
}

fn rewrite_named(cmd: Command, words: &[&str]) -> Command {
    let cmd = rewrite_args(cmd);
    let names: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| {
            words
                .iter()
                .any(|w| s.get_name() == *w || s.get_all_aliases().any(|a| a == *w))
        })
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .iter()
        .fold(cmd, |c, n| c.mut_subcommand(n, |s| rewrite_named(s, words)))
}

/// Rewrite every plain on/off flag of `cmd` and its subcommands into docker's form.
pub fn docker_bools(cmd: Command) -> Command {
    let cmd = rewrite_args(cmd);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .iter()
        .fold(cmd, |c, n| c.mut_subcommand(n, docker_bools))
}

/// The on/off flags of `cmd` itself in docker's form.
fn rewrite_args(cmd: Command) -> Command {
    cmd.mut_args(|a| {
        if matches!(a.get_action(), ArgAction::SetTrue) && a.get_long().is_some() {
            let id = a.get_id().clone();
            // `--rm --rm=false`: the last one wins, as in docker.
            a.overrides_with(id)
                .action(ArgAction::Set)
                .num_args(0..=1)
                .require_equals(true)
                .default_missing_value("true")
                .default_value("false")
                .value_parser(BoolishValueParser::new())
                .value_name("true|false")
                .hide_default_value(true)
                .hide_possible_values(true)
        } else {
            a
        }
    })
}
