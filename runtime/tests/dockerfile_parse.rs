//! The Dockerfile parser (runtime/src/build/dockerfile): directives, continuations,
//! comments, heredocs, every instruction's arguments and docker's error messages. Pure
//! logic: no root, milliseconds.
#![allow(clippy::panic)]

use strata_runtime::build::dockerfile::{parse, Cmd, Dockerfile, Instruction, Kind};

fn ok(text: &str) -> Dockerfile {
    match parse(text) {
        Ok(d) => d,
        Err(e) => panic!("parse failed: {e}\n{text}"),
    }
}

fn fails(text: &str) -> String {
    match parse(text) {
        Ok(d) => panic!("parse succeeded: {d:?}\n{text}"),
        Err(e) => e.0,
    }
}

/// The instructions of the only stage.
fn ins(text: &str) -> Vec<Instruction> {
    let d = ok(text);
    assert_eq!(d.stages.len(), 1, "{d:?}");
    d.stages[0].instructions.clone()
}

fn kind(text: &str) -> Kind {
    let v = ins(&format!("FROM scratch\n{text}"));
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].kind.clone()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn stages_names_platform_and_global_args() {
    let d = ok("ARG BASE=alpine\nARG V\nFROM --platform=$BUILDPLATFORM ${BASE}:3 AS Build\nRUN x\nfrom scratch\nCOPY --from=build /a /b\n");
    assert_eq!(d.escape, '\\');
    assert_eq!(
        d.global_args,
        vec![("BASE".into(), Some("alpine".into())), ("V".into(), None)]
    );
    assert_eq!(d.stages.len(), 2);
    let st = &d.stages[0];
    assert_eq!((st.index, st.line), (0, 3));
    assert_eq!(st.name.as_deref(), Some("build"));
    assert_eq!(st.base, "${BASE}:3");
    assert_eq!(st.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(st.instructions.len(), 1);
    assert_eq!(d.stages[1].name, None);
    assert_eq!(d.stages[1].index, 1);
    match &d.stages[1].instructions[0].kind {
        Kind::Copy(c) => assert_eq!(c.from.as_deref(), Some("build")),
        k => panic!("{k:?}"),
    }
}

#[test]
fn from_errors() {
    assert_eq!(
        fails("FROM a b\n"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert_eq!(
        fails("FROM a IS b\n"),
        "Dockerfile:1: FROM requires either one or three arguments"
    );
    assert!(fails("FROM a AS 1x\n").contains("invalid name for build stage"));
    assert!(fails("FROM a AS b$c\n").contains("invalid name for build stage"));
}

#[test]
fn empty_file_and_missing_from() {
    assert_eq!(fails(""), "Dockerfile: file with no instructions");
    assert_eq!(
        fails("# just a comment\n\n"),
        "Dockerfile: file with no instructions"
    );
    assert_eq!(
        fails("# c\nRUN echo\nFROM a\n"),
        "Dockerfile:2: no build stage in current context"
    );
    assert_eq!(
        fails("ARG A\n"),
        "Dockerfile: no build stage in current context"
    );
}

#[test]
fn unknown_instruction_names_its_line() {
    assert_eq!(
        fails("FROM a\n\n# x\nRUN ok\nFOO bar\n"),
        "Dockerfile:5: unknown instruction: FOO"
    );
}

#[test]
fn instruction_names_are_case_insensitive() {
    let v = ins("from a\nrUn echo hi\nWorkDir /x\n");
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: Cmd::Shell("echo hi".into()),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None
        }
    );
    assert_eq!(v[1].kind, Kind::Workdir("/x".into()));
    assert_eq!(v[1].line, 3);
}

#[test]
fn directives() {
    let d = ok("# syntax=docker/dockerfile:1\n# escape=`\n# check=skip=all\nFROM a\n");
    assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
    assert_eq!(d.escape, '`');
    // Case and spaces around = do not matter.
    assert_eq!(ok("#  ESCAPE = `\nFROM a\n").escape, '`');
    // After an empty line, a comment or an instruction, they are comments.
    assert_eq!(ok("\n# escape=`\nFROM a\n").escape, '\\');
    assert_eq!(ok("# hello\n# escape=`\nFROM a\n").escape, '\\');
    assert_eq!(ok("FROM a\n# escape=`\n").escape, '\\');
    assert_eq!(ok("# unknown=x\n# escape=`\nFROM a\n").escape, '\\');
    assert_eq!(
        fails("# escape=`\n# escape=\\\nFROM a\n"),
        "Dockerfile:2: only one escape parser directive can be used"
    );
    assert!(
        fails("# escape=x\nFROM a\n").contains("invalid escape token 'x' does not match ` or \\")
    );
}

#[test]
fn escape_directive_windows_example() {
    // The documentation's example: with ` as escape, c:\ is a path, not a continuation.
    let d = ok("# escape=`\n\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n");
    let v = &d.stages[0].instructions;
    assert_eq!(v.len(), 2);
    match &v[0].kind {
        Kind::Copy(c) => {
            assert_eq!(c.sources, s(&["testfile.txt"]));
            assert_eq!(c.dest, "c:\\");
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(v[1].text, "RUN dir c:\\");
    // Without the directive the same lines are one COPY (the documented failure).
    let v = ins("FROM microsoft/nanoserver\nCOPY testfile.txt c:\\\\\nRUN dir c:\\\n");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].text, "COPY testfile.txt c:\\RUN dir c:");
    // A backtick continuation.
    let d = ok("# escape=`\nFROM a\nRUN echo `\n  hi\n");
    assert_eq!(d.stages[0].instructions[0].text, "RUN echo   hi");
}

#[test]
fn continuations_comments_and_empty_lines() {
    let v = ins("FROM a\n# comment\n   # indented comment\nRUN apt-get update && \\\n# inside\n\n    apt-get install -y x \\  \n  && echo done\n\nRUN b\n");
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[0].text,
        "RUN apt-get update &&     apt-get install -y x   && echo done"
    );
    assert_eq!(v[0].line, 4);
    assert_eq!(v[1].line, 10);
    // A continuation at the end of the file ends the instruction.
    let v = ins("FROM a\nRUN echo \\");
    assert_eq!(v[0].text, "RUN echo");
    // CRLF files.
    let v = ins("FROM a\r\nRUN a \\\r\n b\r\n");
    assert_eq!(v[0].text, "RUN a  b");
    // A comment marker after the start of a line is part of the instruction.
    let v = ins("FROM a\nRUN echo # not a comment\n");
    assert_eq!(v[0].text, "RUN echo # not a comment");
}

#[test]
fn exec_and_shell_forms() {
    assert_eq!(
        kind(r#"CMD ["a", "b c"]"#),
        Kind::Cmd(Cmd::Exec(s(&["a", "b c"])))
    );
    assert_eq!(
        kind("CMD echo $HOME"),
        Kind::Cmd(Cmd::Shell("echo $HOME".into()))
    );
    // Not valid JSON: the shell form (docker's rule), e.g. single quotes.
    assert_eq!(
        kind("ENTRYPOINT ['a', 'b']"),
        Kind::Entrypoint(Cmd::Shell("['a', 'b']".into()))
    );
    assert_eq!(
        kind(r#"ENTRYPOINT ["unterminated""#),
        Kind::Entrypoint(Cmd::Shell(r#"["unterminated""#.into()))
    );
    assert_eq!(kind("CMD []"), Kind::Cmd(Cmd::Exec(vec![])));
    // Like Go's json.Decoder, the first JSON value counts and text after it is ignored.
    assert_eq!(kind(r#"CMD ["a"] b"#), Kind::Cmd(Cmd::Exec(s(&["a"]))));
    // A JSON value that is not an array: the shell form.
    assert_eq!(
        kind(r#"CMD [{"a": 1}"#),
        Kind::Cmd(Cmd::Shell(r#"[{"a": 1}"#.into()))
    );
    assert!(fails("FROM a\nCMD [1, 2]\n").contains("arrays must be comprised of strings only"));
    assert_eq!(
        kind(r#"RUN ["/bin/sh", "-c", "echo \"q\""]"#),
        Kind::Run {
            cmd: Cmd::Exec(s(&["/bin/sh", "-c", "echo \"q\""])),
            heredocs: vec![],
            mounts: vec![],
            network: None,
            security: None
        }
    );
}

#[test]
fn run_flags() {
    match kind("RUN --mount=type=cache,target=/root/.cache --mount=type=bind,source=.,target=/src --network=none --security=insecure make") {
        Kind::Run { cmd, mounts, network, security, .. } => {
            assert_eq!(cmd, Cmd::Shell("make".into()));
            assert_eq!(mounts, s(&["type=cache,target=/root/.cache", "type=bind,source=.,target=/src"]));
            assert_eq!(network.as_deref(), Some("none"));
            assert_eq!(security.as_deref(), Some("insecure"));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(
        fails("FROM a\nRUN --bogus=1 x\n"),
        "Dockerfile:2: unknown flag: bogus"
    );
    assert_eq!(
        fails("FROM a\nRUN --network x\n"),
        "Dockerfile:2: Missing a value on flag: network"
    );
    assert_eq!(
        fails("FROM a\nRUN --network=a --network=b x\n"),
        "Dockerfile:2: Duplicate flag specified: network"
    );
    // A bare -- ends the flags.
    match kind("RUN -- --not-a-flag") {
        Kind::Run { cmd, .. } => assert_eq!(cmd, Cmd::Shell("--not-a-flag".into())),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        fails("FROM a\nRUN\n"),
        "Dockerfile:2: RUN requires at least one argument"
    );
}

#[test]
fn copy_and_add() {
    match kind("COPY --from=build --chown=1000:1000 --chmod=0755 --link --exclude=*.md --exclude=tmp a b/ /dest/") {
        Kind::Copy(c) => {
            assert_eq!(c.sources, s(&["a", "b/"]));
            assert_eq!(c.dest, "/dest/");
            assert_eq!(c.from.as_deref(), Some("build"));
            assert_eq!(c.chown.as_deref(), Some("1000:1000"));
            assert_eq!(c.chmod.as_deref(), Some("0755"));
            assert!(c.link && !c.json);
            assert_eq!(c.exclude, s(&["*.md", "tmp"]));
        }
        k => panic!("{k:?}"),
    }
    match kind(r#"COPY ["a b", "c", "/d e/"]"#) {
        Kind::Copy(c) => {
            assert_eq!(c.sources, s(&["a b", "c"]));
            assert_eq!(c.dest, "/d e/");
            assert!(c.json);
        }
        k => panic!("{k:?}"),
    }
    match kind("ADD --keep-git-dir=true --checksum=sha256:abc --link=false https://x/y.tar /y") {
        Kind::Add(c) => {
            assert!(c.keep_git_dir && !c.link);
            assert_eq!(c.checksum.as_deref(), Some("sha256:abc"));
            assert_eq!(c.sources, s(&["https://x/y.tar"]));
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(
        fails("FROM a\nADD --from=x a b\n"),
        "Dockerfile:2: unknown flag: from"
    );
    assert!(
        fails("FROM a\nCOPY --link=maybe a b\n").contains("expecting boolean value for flag link")
    );
    assert_eq!(
        fails("FROM a\nCOPY onlyone\n"),
        "Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined."
    );
    // COPY <<EOF /file: the heredoc is a source.
    let v = ins("FROM a\nCOPY <<EOF <<-'END' real /dest/\nhello $X\nEOF\n\tbye\n\tEND\nRUN x\n");
    assert_eq!(v.len(), 2);
    match &v[0].kind {
        Kind::Copy(c) => {
            assert_eq!(c.sources, s(&["real"]));
            assert_eq!(c.heredocs.len(), 2);
            assert_eq!(c.heredocs[0].body, "hello $X\n");
            assert!(c.heredocs[0].expand);
            assert_eq!(c.heredocs[1].content(), "bye\n");
            assert!(!c.heredocs[1].expand && !c.heredocs[1].script);
        }
        k => panic!("{k:?}"),
    }
    match kind("COPY <<EOF /x\nEOF") {
        Kind::Copy(c) => {
            assert!(c.sources.is_empty());
            assert_eq!(c.heredocs[0].body, "");
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn env_and_label() {
    assert_eq!(
        kind(r#"ENV k=v k2="v 2" k3=a\ b"#),
        Kind::Env(vec![
            ("k".into(), "v".into()),
            ("k2".into(), "\"v 2\"".into()),
            ("k3".into(), "a\\ b".into())
        ])
    );
    // Legacy form: the value is the rest of the line.
    assert_eq!(
        kind("ENV MY_NAME John Doe"),
        Kind::Env(vec![("MY_NAME".into(), "John Doe".into())])
    );
    assert_eq!(
        kind(r#"LABEL "com.example.vendor"="ACME Incorporated" version=1.0"#),
        Kind::Label(vec![
            (
                "\"com.example.vendor\"".into(),
                "\"ACME Incorporated\"".into()
            ),
            ("version".into(), "1.0".into())
        ])
    );
    assert_eq!(
        kind("LABEL description legacy form"),
        Kind::Label(vec![("description".into(), "legacy form".into())])
    );
    assert_eq!(
        fails("FROM a\nENV k\n"),
        "Dockerfile:2: ENV must have two arguments"
    );
    assert_eq!(
        fails("FROM a\nENV =v\n"),
        "Dockerfile:2: ENV names can not be blank"
    );
    assert!(fails("FROM a\nENV a=b c\n").contains("can't find = in \"c\""));
    assert_eq!(
        fails("FROM a\nENV\n"),
        "Dockerfile:2: ENV requires at least one argument"
    );
}

#[test]
fn arg_expose_volume_and_single_arguments() {
    assert_eq!(
        kind("ARG a b=2 c=\"x y\""),
        Kind::Arg(vec![
            ("a".into(), None),
            ("b".into(), Some("2".into())),
            ("c".into(), Some("\"x y\"".into()))
        ])
    );
    assert_eq!(
        fails("FROM a\nARG\n"),
        "Dockerfile:2: ARG requires at least one argument"
    );
    assert_eq!(kind("EXPOSE 80 53/udp"), Kind::Expose(s(&["80", "53/udp"])));
    assert_eq!(
        kind(r#"VOLUME ["/data", "/logs"]"#),
        Kind::Volume(s(&["/data", "/logs"]))
    );
    assert_eq!(
        kind("VOLUME /var/log /var/db"),
        Kind::Volume(s(&["/var/log", "/var/db"]))
    );
    assert!(
        fails("FROM a\nVOLUME [\"\"]\n").contains("VOLUME specified can not be an empty string")
    );
    assert_eq!(
        kind("WORKDIR /path to/x"),
        Kind::Workdir("/path to/x".into())
    );
    assert_eq!(kind("USER app:app"), Kind::User("app:app".into()));
    assert_eq!(
        kind("STOPSIGNAL SIGKILL"),
        Kind::StopSignal("SIGKILL".into())
    );
    assert_eq!(
        kind("MAINTAINER Jane <j@example.com>"),
        Kind::Maintainer("Jane <j@example.com>".into())
    );
    assert_eq!(
        fails("FROM a\nWORKDIR\n"),
        "Dockerfile:2: WORKDIR requires exactly one argument"
    );
    assert_eq!(
        fails("FROM a\nEXPOSE\n"),
        "Dockerfile:2: EXPOSE requires at least one argument"
    );
    // Flags are parsed on every instruction, as docker does.
    assert_eq!(fails("FROM a\nCMD --x\n"), "Dockerfile:2: unknown flag: x");
}

#[test]
fn shell_instruction() {
    assert_eq!(
        kind(r#"SHELL ["/bin/bash", "-c"]"#),
        Kind::Shell(s(&["/bin/bash", "-c"]))
    );
    assert_eq!(
        fails("FROM a\nSHELL /bin/bash -c\n"),
        "Dockerfile:2: SHELL requires the arguments to be in JSON form"
    );
    assert_eq!(
        fails("FROM a\nSHELL []\n"),
        "Dockerfile:2: SHELL requires at least one argument"
    );
}

#[test]
fn healthcheck() {
    match kind("HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1") {
        Kind::Healthcheck(h) => {
            assert_eq!(h.test, Some(s(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"])));
            assert_eq!(h.interval, Some(300_000_000_000));
            assert_eq!(h.timeout, Some(3_000_000_000));
            assert_eq!(h.start_period, Some(90_000_000_000));
            assert_eq!(h.start_interval, Some(500_000_000));
            assert_eq!(h.retries, Some(3));
        }
        k => panic!("{k:?}"),
    }
    match kind(r#"HEALTHCHECK cmd ["/bin/check", "-q"]"#) {
        Kind::Healthcheck(h) => {
            assert_eq!(h.test, Some(s(&["CMD", "/bin/check", "-q"])));
            assert_eq!(h.interval, None);
        }
        k => panic!("{k:?}"),
    }
    match kind("HEALTHCHECK --interval=1.5h CMD x") {
        Kind::Healthcheck(h) => assert_eq!(h.interval, Some(5_400_000_000_000)),
        k => panic!("{k:?}"),
    }
    match kind("HEALTHCHECK NONE") {
        Kind::Healthcheck(h) => assert_eq!(h.test, None),
        k => panic!("{k:?}"),
    }
    assert_eq!(
        fails("FROM a\nHEALTHCHECK NONE x\n"),
        "Dockerfile:2: HEALTHCHECK NONE takes no arguments"
    );
    assert_eq!(
        fails("FROM a\nHEALTHCHECK TEST x\n"),
        "Dockerfile:2: Unknown type \"TEST\" in HEALTHCHECK (try CMD)"
    );
    assert_eq!(
        fails("FROM a\nHEALTHCHECK --interval=10us CMD x\n"),
        "Dockerfile:2: Interval \"interval\" cannot be less than 1ms"
    );
    assert!(fails("FROM a\nHEALTHCHECK --timeout=5 CMD x\n").contains("missing unit"));
    assert!(fails("FROM a\nHEALTHCHECK --timeout=5y CMD x\n").contains("unknown unit"));
    assert!(
        fails("FROM a\nHEALTHCHECK --retries=-1 CMD x\n").contains("--retries cannot be negative")
    );
    assert_eq!(
        fails("FROM a\nHEALTHCHECK CMD\n"),
        "Dockerfile:2: Missing command after HEALTHCHECK CMD"
    );
}

#[test]
fn text_is_what_history_shows() {
    let v = ins("FROM a\n  RUN   echo a \\\n    b   \n");
    assert_eq!(v[0].text, "RUN   echo a     b");
}

#[test]
fn unknown_instruction_is_named_as_written() {
    assert_eq!(
        fails("FROM a\nfron b\n"),
        "Dockerfile:2: unknown instruction: fron"
    );
}
