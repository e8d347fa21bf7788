//! strata's one size syntax, for mount options (`delta_threshold=`, `delta_block=`) and
//! `strata run --memory`: docker's sizes (go-units `RAMInBytes`), so a size that works with
//! docker works here.

/// Parse a size into bytes: a number, optionally with a fraction, then an optional space
/// and an optional unit `k`, `m`, `g`, `t` or `p` (powers of 1024), optionally followed by
/// `i` and/or `b`, all case-insensitive: `4096`, `64k`, `1M`, `512mb`, `64KiB`, `1.5g`,
/// `100b`, `2 GB`. A fraction of a byte is dropped (`1.5` is 1). `None` for anything else
/// (a sign, no digits, an unknown unit, a value past u64).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return None,
    };
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) => (w, f),
        None => (num, ""),
    };
    if whole.is_empty() || frac.contains('.') || (num.contains('.') && frac.is_empty()) {
        return None;
    }
    let whole: u128 = whole.parse().ok()?;
    let mut bytes = whole.checked_mul(1u128 << shift)?;
    // The fraction, exactly: digits / 10^len of a unit, at most 19 digits so 10^len fits.
    if !frac.is_empty() {
        let frac = &frac[..frac.len().min(19)];
        let den = 10u128.pow(frac.len() as u32);
        let f: u128 = frac.parse().ok()?;
        bytes += f * (1u128 << shift) / den;
    }
    u64::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn plain_and_binary_units() {
        assert_eq!(parse_size("3"), Some(3));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size(" 1M "), Some(1 << 20));
        assert_eq!(parse_size("32m"), Some(32 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("2T"), Some(2 << 40));
        assert_eq!(parse_size("1p"), Some(1 << 50));
    }

    #[test]
    fn docker_forms() {
        assert_eq!(parse_size("512mb"), Some(512 << 20));
        assert_eq!(parse_size("64MB"), Some(64 << 20));
        assert_eq!(parse_size("64KiB"), Some(64 << 10));
        assert_eq!(parse_size("64ki"), Some(64 << 10));
        assert_eq!(parse_size("100b"), Some(100));
        assert_eq!(parse_size("2 GB"), Some(2 << 30));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("0.5k"), Some(512));
        assert_eq!(parse_size("1.5"), Some(1));
        assert_eq!(parse_size("0"), Some(0));
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "x",
            "k",
            "-1k",
            "+1",
            "1x",
            "1kk",
            "1bb",
            "1  k",
            ".5k",
            "1.k",
            "1.2.3",
            "99999999999999999999",
            "16777216p",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
