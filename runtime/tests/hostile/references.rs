//! References and tar errors found by the fuzzers.

use super::*;

#[test]
fn pulled_references_give_valid_local_tags() {
    use strata_runtime::image::Reference;
    use strata_runtime::transfer::reference::RemoteRef;
    // Found by fuzz/image_reference: the local tag `pull` makes was refused after the
    // download (IPv6 registry, upper-case host, a name over 255 bytes with its registry).
    for s in [
        "[::1]:5000/app:1",
        "Registry.Example.COM/app:1",
        "localhost:5000/a/b",
    ] {
        let r = RemoteRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        let local = format!("{}:{}", r.local_name(), r.tag.clone().unwrap_or_default());
        Reference::parse(&local).unwrap_or_else(|e| panic!("{s} -> {local}: {e}"));
        assert_eq!(RemoteRef::parse(&r.to_string()).unwrap(), r);
    }
    let long = format!("l.example.com/{}:1", "a".repeat(250));
    let err = RemoteRef::parse(&long).unwrap_err().to_string();
    assert!(err.contains("255"), "{err}");
    for bad in [
        "-a.b/app",
        "a.b./app",
        "a.b:x/app",
        "[zz]:1/app",
        "a b.c/app",
    ] {
        assert!(RemoteRef::parse(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn tar_errors_quoting_names_stay_one_line() {
    // Found by fuzz/tar_import: the tar crate's message quotes the raw entry name.
    let e = Env::new();
    let mut t = tar_of(&[f("z", b"y"), f("etc/a\nb\x1b[31m", b"x")]);
    // Break the second header's checksum so the tar crate reports it with the name.
    t[1024 + 148..1024 + 156].copy_from_slice(b"zzzzzzz\0");
    let p = e.input("nl.tar", &t);
    let err = e.fails("newline name", &["import", p.to_str().unwrap(), "nl:1"]);
    assert!(!err.contains('\x1b'), "{err:?}");
    // Found by fuzz/image_load: the same through `strata load` (the archive index).
    let err = e.fails(
        "newline name in an archive",
        &["load", "-i", p.to_str().unwrap()],
    );
    assert!(!err.contains('\x1b'), "{err:?}");
}
