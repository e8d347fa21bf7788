//! Dockerfile heredocs (`RUN <<EOF`, `<<-`, quoted delimiters, several on a line, COPY
//! sources) and ONBUILD triggers (refused triggers, heredocs kept, parsed back with
//! parse_instruction_line). Pure logic: no root, milliseconds.
#![allow(clippy::panic)]

use strata_runtime::build::dockerfile::{
    heredoc_command, parse, parse_instruction_line, Cmd, Dockerfile, Heredoc, Instruction, Kind,
};

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

fn run_heredocs(text: &str) -> (Cmd, Vec<Heredoc>) {
    match ins(&format!("FROM a\n{text}")).remove(0).kind {
        Kind::Run { cmd, heredocs, .. } => (cmd, heredocs),
        k => panic!("{k:?}"),
    }
}

#[test]
fn heredocs() {
    let v = ins("FROM a\nRUN <<EOF\napt-get update\n  echo $HOME\nEOF\nRUN next\n");
    assert_eq!(v.len(), 2);
    assert_eq!(v[1].line, 6);
    let (cmd, h) = run_heredocs("RUN <<EOF\napt-get update\n  echo $HOME\nEOF\n");
    assert_eq!(cmd, Cmd::Shell("<<EOF".into()));
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].name, "EOF");
    assert_eq!(h[0].body, "apt-get update\n  echo $HOME\n");
    assert!(h[0].expand && !h[0].strip_tabs && h[0].script);

    // <<-: tabs before the delimiter and in the body are stripped.
    let (_, h) = run_heredocs("RUN <<-EOT\n\techo a\n\tEOT\n");
    assert!(h[0].strip_tabs);
    assert_eq!(h[0].body, "\techo a\n");
    assert_eq!(h[0].content(), "echo a\n");

    // Quoted delimiters: no expansion.
    for q in [r#"<<"EOF""#, "<<'EOF'", r#"<<E"OF""#] {
        let (_, h) = run_heredocs(&format!("RUN {q}\n$x\nEOF\n"));
        assert_eq!(h[0].name, "EOF", "{q}");
        assert!(!h[0].expand, "{q}");
    }

    // A heredoc as stdin of a command.
    let (cmd, h) = run_heredocs("RUN python3 <<EOF\nprint(1)\nEOF\n");
    assert_eq!(cmd, Cmd::Shell("python3 <<EOF".into()));
    assert!(!h[0].script);

    assert_eq!(
        heredoc_command("python3 <<EOF", &h),
        "python3 <<EOF\nprint(1)\nEOF"
    );
    let (_, tabs) = run_heredocs("RUN cat <<-EOF\n\tx\n\tEOF\n");
    assert_eq!(heredoc_command("cat <<-EOF", &tabs), "cat <<-EOF\nx\nEOF");

    // Several on one line, read in order.
    let (_, h) = run_heredocs(
        "RUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n",
    );
    assert_eq!(h.len(), 2);
    assert_eq!(
        (h[0].name.as_str(), h[0].body.as_str()),
        ("FILE1", "I am\nfirst\n")
    );
    assert_eq!(
        (h[1].name.as_str(), h[1].body.as_str()),
        ("FILE2", "I am\nsecond\n")
    );
    assert!(!h[0].script && !h[1].script);

    // A file descriptor.
    let (_, h) = run_heredocs("RUN cat 3<<EOF\nx\nEOF\n");
    assert_eq!(h[0].fd, Some(3));

    // Not heredocs: quoted, or << with a space.
    let (_, h) = run_heredocs("RUN echo \"<<EOF\" << EOF\n");
    assert!(h.is_empty());

    assert!(
        fails("FROM a\nRUN <<EOF\nno end\n").starts_with("Dockerfile:2: unterminated heredoc EOF")
    );
    // Other instructions do not take heredocs.
    assert_eq!(ins("FROM a\nCMD cat <<EOF\nRUN x\n").len(), 2);
}

#[test]
fn onbuild() {
    assert_eq!(
        kind("ONBUILD ADD . /app/src"),
        Kind::Onbuild("ADD . /app/src".into())
    );
    assert_eq!(
        fails("FROM a\nONBUILD ONBUILD RUN x\n"),
        "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
    );
    assert_eq!(
        fails("FROM a\nonbuild from b\n"),
        "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        fails("FROM a\nONBUILD MAINTAINER me\n"),
        "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger"
    );
    assert_eq!(
        fails("FROM a\nONBUILD BOGUS x\n"),
        "Dockerfile:2: unknown instruction: BOGUS"
    );
    // Heredocs of a trigger are stored with it, and the text parses back.
    let t = match kind("ONBUILD RUN <<EOF\necho hi\nEOF") {
        Kind::Onbuild(t) => t,
        k => panic!("{k:?}"),
    };
    assert_eq!(t, "RUN <<EOF\necho hi\nEOF");
    let i = match parse_instruction_line(&t, '\\') {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    };
    match i.kind {
        Kind::Run { heredocs, .. } => assert_eq!(heredocs[0].body, "echo hi\n"),
        k => panic!("{k:?}"),
    }
}

#[test]
fn parse_instruction_line_for_triggers() {
    let i = match parse_instruction_line("copy . /app", '\\') {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(i.text, "copy . /app");
    assert!(matches!(i.kind, Kind::Copy(_)));
    assert!(parse_instruction_line("RUN a\nRUN b", '\\').is_err());
    assert!(parse_instruction_line("", '\\').is_err());
    assert!(parse_instruction_line("NOPE x", '\\').is_err());
}
