//! Docker's word expansion for Dockerfile arguments (build/dockerfile/expand.rs): the
//! documented examples of the Dockerfile reference, quoting, escapes and modifiers.
#![allow(clippy::panic)]

use std::collections::HashMap;

use strata_runtime::build::dockerfile::{expand, expand_heredoc, expand_words, parse, Kind};

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn x(word: &str, vars: &HashMap<String, String>) -> String {
    match expand(word, '\\', &|k| vars.get(k).cloned()) {
        Ok(s) => s,
        Err(e) => panic!("expand {word:?}: {e}"),
    }
}

fn xerr(word: &str, vars: &HashMap<String, String>) -> String {
    match expand(word, '\\', &|k| vars.get(k).cloned()) {
        Ok(s) => panic!("expand {word:?} gave {s:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn documented_environment_replacement() {
    // FROM busybox / ENV FOO=/bar / WORKDIR ${FOO} / ADD . $FOO / COPY \$FOO /quux
    let e = env(&[("FOO", "/bar")]);
    assert_eq!(x("${FOO}", &e), "/bar");
    assert_eq!(x("$FOO", &e), "/bar");
    assert_eq!(x("\\$FOO", &e), "$FOO");
    assert_eq!(x("${FOO}/baz", &e), "/bar/baz");
    assert_eq!(x("${FOO}_x$FOO", &e), "/bar_x/bar");
    // ${variable:-word} and ${variable:+word}
    assert_eq!(x("${UNSET:-word}", &e), "word");
    assert_eq!(x("${FOO:-word}", &e), "/bar");
    assert_eq!(x("${FOO:+word}", &e), "word");
    assert_eq!(x("${UNSET:+word}", &e), "");
    // word may itself hold variables.
    assert_eq!(x("${UNSET:-$FOO/x}", &e), "/bar/x");
    // ARG CONT_IMG_VER / ENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}
    assert_eq!(x("${CONT_IMG_VER:-v1.0.0}", &env(&[])), "v1.0.0");
    assert_eq!(
        x(
            "${CONT_IMG_VER:-v1.0.0}",
            &env(&[("CONT_IMG_VER", "v2.0.1")])
        ),
        "v2.0.1"
    );
}

#[test]
fn documented_env_values_and_same_line_scoping() {
    // ENV MY_NAME="John Doe" / ENV MY_DOG=Rex\ The\ Dog / ENV MY_CAT=fluffy
    let d = match parse(
        "FROM a\nENV MY_NAME=\"John Doe\"\nENV MY_DOG=Rex\\ The\\ Dog\nENV MY_CAT=fluffy\n",
    ) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let none = env(&[]);
    let vals: Vec<String> = d.stages[0]
        .instructions
        .iter()
        .flat_map(|i| match &i.kind {
            Kind::Env(p) => p.iter().map(|(_, v)| x(v, &none)).collect::<Vec<_>>(),
            k => panic!("{k:?}"),
        })
        .collect();
    assert_eq!(vals, ["John Doe", "Rex The Dog", "fluffy"]);

    // ENV abc=hello / ENV abc=bye def=$abc / ENV ghi=$abc: def=hello, ghi=bye — each
    // instruction's values see the environment from before the instruction.
    let d = match parse("FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n") {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let mut vars = env(&[]);
    for i in &d.stages[0].instructions {
        let Kind::Env(pairs) = &i.kind else { panic!() };
        let before = vars.clone();
        for (k, v) in pairs {
            vars.insert(k.clone(), x(v, &before));
        }
    }
    assert_eq!(vars["def"], "hello");
    assert_eq!(vars["ghi"], "bye");
    assert_eq!(vars["abc"], "bye");
}

#[test]
fn quotes_and_escapes() {
    let e = env(&[("V", "val"), ("SP", "a b")]);
    assert_eq!(x("'$V'", &e), "$V");
    assert_eq!(x("\"$V\"", &e), "val");
    assert_eq!(x("\"a \\\"q\\\" \\$V \\\\ \\n\"", &e), "a \"q\" $V \\ \\n");
    assert_eq!(x("a\\ b", &e), "a b");
    assert_eq!(x("it''s", &e), "its");
    assert_eq!(x("'a\\b'", &e), "a\\b");
    assert_eq!(x("trailing\\", &e), "trailing");
    assert_eq!(x("$", &e), "$");
    assert_eq!(x("a$-b", &e), "ab");
    assert_eq!(x("100%", &e), "100%");
    assert_eq!(x("$V.txt ${V}s", &e), "val.txt vals");
    // The backtick escape.
    assert_eq!(
        expand("`$V c:\\dir", '`', &|k| e.get(k).cloned()).ok(),
        Some("$V c:\\dir".to_string())
    );
    assert!(xerr("'open", &e).contains("matching single-quote"));
    assert!(xerr("\"open", &e).contains("matching double-quote"));
}

#[test]
fn modifiers() {
    let e = env(&[("SET", "x"), ("EMPTY", "")]);
    assert_eq!(x("${EMPTY:-d}", &e), "d");
    assert_eq!(x("${EMPTY-d}", &e), "");
    assert_eq!(x("${UNSET-d}", &e), "d");
    assert_eq!(x("${EMPTY:+w}", &e), "");
    assert_eq!(x("${EMPTY+w}", &e), "w");
    assert_eq!(x("${UNSET+w}", &e), "");
    assert_eq!(x("${SET:?must}", &e), "x");
    assert_eq!(xerr("${UNSET:?must be set}", &e), "UNSET: must be set");
    assert_eq!(xerr("${EMPTY:?}", &e), "EMPTY: is not allowed to be empty");
    assert_eq!(x("${EMPTY?}", &e), "");
    assert_eq!(xerr("${UNSET?}", &e), "UNSET: is not allowed to be unset");
    assert_eq!(xerr("${SET", &e), "syntax error: missing '}'");
    assert_eq!(xerr("${}", &e), "syntax error: bad substitution");
    assert_eq!(
        xerr("${SET:x}", &e),
        "unsupported modifier (x) in substitution"
    );
    assert_eq!(x("${UNSET:-'a}b'}", &e), "a}b");
}

#[test]
fn word_splitting() {
    let e = env(&[("SP", "a b"), ("P", "80")]);
    let w = |s: &str| match expand_words(s, '\\', &|k| e.get(k).cloned()) {
        Ok(v) => v,
        Err(err) => panic!("{err}"),
    };
    assert_eq!(w("$P 53/udp"), ["80", "53/udp"]);
    assert_eq!(w("  x   y  "), ["x", "y"]);
    assert_eq!(w("$SP c"), ["a", "b", "c"]);
    assert_eq!(w("\"$SP\" c"), ["a b", "c"]);
    assert_eq!(w("'q r' s\\ t"), ["q r", "s t"]);
    assert_eq!(w("\"\" x"), ["", "x"]);
    assert!(w("").is_empty());
}

#[test]
fn pattern_modifiers() {
    let e = env(&[("F", "archive.tar.gz"), ("P", "/usr/local/bin")]);
    assert_eq!(x("${F#*.}", &e), "tar.gz");
    assert_eq!(x("${F##*.}", &e), "gz");
    assert_eq!(x("${F%.*}", &e), "archive.tar");
    assert_eq!(x("${F%%.*}", &e), "archive");
    assert_eq!(x("${F#nomatch}", &e), "archive.tar.gz");
    assert_eq!(x("${P/local/opt}", &e), "/usr/opt/bin");
    assert_eq!(x("${P//\\//:}", &e), ":usr:local:bin");
    assert_eq!(x("${P/?s/X}", &e), "/Xr/local/bin");
    assert_eq!(x("${UNSET#x}", &e), "");
}

#[test]
fn heredoc_bodies() {
    let e = env(&[("V", "val")]);
    let h = |s: &str| match expand_heredoc(s, '\\', &|k| e.get(k).cloned()) {
        Ok(v) => v,
        Err(err) => panic!("{err}"),
    };
    assert_eq!(h("a $V '${V}' \"$V\"\n"), "a val 'val' \"val\"\n");
    assert_eq!(h("\\$V \\\\ \\n\n"), "$V \\ \\n\n");
    assert_eq!(h("joined \\\nline\n"), "joined line\n");
}

#[test]
fn pattern_matching_many_stars_on_a_long_value() {
    let long = "a".repeat(200);
    let e = env(&[("L", long.as_str())]);
    assert_eq!(x("${L#*a*a*a*a*a*a*a*a*b}", &e), long);
    assert_eq!(x("${L%\\*}", &e), long);
}
