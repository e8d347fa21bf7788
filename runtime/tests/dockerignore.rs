//! `.dockerignore` matching (build/dockerignore.rs): the documented examples of docker's
//! build-context reference and the rules of moby's patternmatcher.
#![allow(clippy::panic)]

use strata_runtime::build::dockerignore::DockerIgnore;

fn di(text: &str) -> DockerIgnore {
    match DockerIgnore::parse(text) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn documented_example() {
    let d = di("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
    assert!(d.is_excluded("somedir/temporary.txt"));
    assert!(d.is_excluded("somedir/temp"));
    assert!(d.is_excluded("somedir/temp/inside/file"));
    assert!(d.is_excluded("somedir/subdir/temporary.txt"));
    assert!(d.is_excluded("tempa"));
    assert!(d.is_excluded("tempb"));
    assert!(!d.is_excluded("temp"));
    assert!(!d.is_excluded("tempab"));
    assert!(!d.is_excluded("temporary.txt"));
    assert!(!d.is_excluded("a/b/c/temp"));
    assert!(!d.is_excluded("# comment"));
}

#[test]
fn double_star() {
    let d = di("**/*.go\n");
    assert!(d.is_excluded("main.go"));
    assert!(d.is_excluded("a/b/c/x.go"));
    assert!(!d.is_excluded("a/b/go"));
    let d = di("a/**/z\n");
    assert!(d.is_excluded("a/z"));
    assert!(d.is_excluded("a/b/c/z"));
    assert!(!d.is_excluded("b/a/z"));
    let d = di("build/**\n");
    assert!(d.is_excluded("build/x/y"));
    let d = di("**\n!keep\n");
    assert!(d.is_excluded("anything/at/all"));
    assert!(!d.is_excluded("keep"));
}

#[test]
fn documented_exceptions() {
    let d = di("*.md\n!README.md\n");
    assert!(d.is_excluded("CHANGES.md"));
    assert!(!d.is_excluded("README.md"));
    assert!(!d.is_excluded("docs/x.md")); // * does not cross /

    let d = di("*.md\n!README*.md\nREADME-secret.md\n");
    assert!(d.is_excluded("CHANGES.md"));
    assert!(!d.is_excluded("README-public.md"));
    assert!(d.is_excluded("README-secret.md"));

    let d = di("*.md\nREADME-secret.md\n!README*.md\n");
    assert!(!d.is_excluded("README-secret.md"));
    assert!(!d.is_excluded("README.md"));
    assert!(d.is_excluded("other.md"));
}

#[test]
fn cleaning_and_syntax() {
    let d = di("/abs\n./dot/x\nsub//dir/\n  spaced  \nq?[a-c]\n[^x]z\nlit\\*\n");
    assert!(d.is_excluded("abs"));
    assert!(d.is_excluded("abs/inner"));
    assert!(d.is_excluded("dot/x"));
    assert!(d.is_excluded("sub/dir/f"));
    assert!(d.is_excluded("spaced"));
    assert!(d.is_excluded("q1b"));
    assert!(!d.is_excluded("q1d"));
    assert!(d.is_excluded("az"));
    assert!(!d.is_excluded("xz"));
    assert!(d.is_excluded("lit*"));
    assert!(!d.is_excluded("litx"));
    // Dots are literal, not regexp wildcards.
    let d = di("a.b\n");
    assert!(!d.is_excluded("axb"));
    // Paths given with ./ or a leading / are cleaned too.
    assert!(d.is_excluded("./a.b"));
    assert!(d.is_excluded("/a.b"));
    // Comments only at column 0; blank lines skipped; a bad class is an error.
    let d = di("\n\n #x\n");
    assert!(d.is_excluded("#x"));
    assert!(di("").is_empty());
    assert!(DockerIgnore::parse("[abc\n").is_err());
}

#[test]
fn parent_directory_and_walk_rule() {
    let d = di("node_modules\n");
    assert!(d.is_excluded("node_modules"));
    assert!(d.is_excluded("node_modules/x/y.js"));
    assert!(!d.may_contain_included("node_modules"));
    assert!(d.may_contain_included("src"));

    // An exception inside an excluded directory: the walk must go in.
    let d = di("vendor\n!vendor/keep/me.txt\n");
    assert!(d.is_excluded("vendor/other"));
    assert!(!d.is_excluded("vendor/keep/me.txt"));
    assert!(d.may_contain_included("vendor"));
    assert!(d.may_contain_included("vendor/keep"));
    assert!(!d.may_contain_included("vendor/other"));

    // Docker's rule only looks at the exception's text: !**/*.go cannot reopen a directory.
    let d = di("docs\n!**/*.go\n");
    assert!(!d.may_contain_included("docs"));
    assert!(!d.may_contain_included("vendorx") || !d.is_excluded("vendorx"));
}
