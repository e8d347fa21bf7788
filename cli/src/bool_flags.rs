//! docker's boolean flags: every `--flag` also takes `--flag=true` and `--flag=false`
//! (`-d=true` too), while `--rm true` keeps `true` as the next argument (the image), as docker
//! does: the value must be attached with `=`.

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Command};

/// Rewrite every plain on/off flag of `cmd` and its subcommands into docker's form.
pub fn docker_bools(cmd: Command) -> Command {
    let cmd = cmd.mut_args(|a| {
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
    });
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names
        .iter()
        .fold(cmd, |c, n| c.mut_subcommand(n, docker_bools))
}
