//! Human byte sizes: parsing (`64MiB`, `1GiB`, `512KiB`, `1000`, `8MB`) and printing.

use std::fmt;

/// Why a size string was rejected: not a size, or too large.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeParseError(String, bool);

impl fmt::Display for SizeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1 {
            return write!(f, "size {:?} is too large (at most 16 EiB)", self.0);
        }
        write!(
            f,
            "invalid size {:?}: expected a whole number with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, K, M, G, T)",
            self.0
        )
    }
}

impl std::error::Error for SizeParseError {}

/// Parses a byte size: digits (`_` allowed) then an optional unit, case-insensitive, optional
/// space between. Decimal units (`KB`, `MB`, `GB`, `TB`) are powers of 1000; binary units
/// (`KiB`, `MiB`, `GiB`, `TiB`) and the single letters `K`, `M`, `G`, `T` are powers of 1024.
/// Overflow is an error.
pub fn parse_size(s: &str) -> Result<u64, SizeParseError> {
    let err = || SizeParseError(s.to_owned(), false);
    let too_large = || SizeParseError(s.to_owned(), true);
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: String = num.chars().filter(|c| *c != '_').collect();
    if num.is_empty() {
        return Err(err());
    }
    // Only digits are left, so a failed parse is an overflow.
    let n: u64 = num.parse().map_err(|_| too_large())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(err()),
    };
    n.checked_mul(mult).ok_or_else(too_large)
}

/// Formats a byte count for people: `512 B`, `1.0 KiB`, `100.0 MiB`, `3.5 GiB`.
pub fn format_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("8MB"), Ok(8_000_000));
        assert_eq!(parse_size("4 m"), Ok(4 << 20));
        assert_eq!(parse_size(" 16kib "), Ok(16 << 10));
        assert_eq!(parse_size("1_000b"), Ok(1000));
        assert_eq!(parse_size("2T"), Ok(2 << 40));
    }

    #[test]
    fn rejects_junk_and_overflow() {
        for bad in [
            "",
            "MiB",
            "1.5GiB",
            "-1",
            "12 parsecs",
            "1e9",
            "18446744073709551616",
            "17000000TiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_size("x")
                .unwrap_err()
                .to_string()
                .starts_with("invalid size \"x\"")
        );
        for big in ["18446744073709551616", "17000000TiB"] {
            let e = parse_size(big).unwrap_err().to_string();
            assert!(e.ends_with("is too large (at most 16 EiB)"), "{e}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(100 << 20), "100.0 MiB");
        assert_eq!(format_size(u64::MAX), "16.0 EiB");
    }
}
