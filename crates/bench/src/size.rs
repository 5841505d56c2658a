//! Parsing and formatting of object sizes (`4KiB`, `16MiB`, `1GiB`, `4096`).

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Largest object a single S3 `PutObject` may carry (5 GiB).
pub const MAX_OBJECT_SIZE: u64 = 5 * GIB;

/// Parse a size such as `4KiB`, `16MiB`, `1GiB`, `512` (bytes) or `10MB`.
///
/// Binary suffixes (`KiB`, `MiB`, `GiB`, also `K`, `M`, `G`) are powers of
/// 1024, decimal ones (`KB`, `MB`, `GB`) powers of 1000. Suffixes are
/// case-insensitive and may be separated from the number by spaces.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!(
            "invalid size {s:?}: expected e.g. 4KiB, 16MiB, 4096"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|e| format!("invalid size {s:?}: {e}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => KIB,
        "m" | "mib" => MIB,
        "g" | "gib" => GIB,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        other => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))?;
    if bytes > MAX_OBJECT_SIZE {
        return Err(format!(
            "invalid size {s:?}: larger than the 5GiB single-PUT limit"
        ));
    }
    Ok(bytes)
}

/// Compact human label: exact binary unit when divisible, else bytes.
/// Used both in the table and in object key names.
pub fn format_size(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{}GiB", bytes / GIB)
    } else if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{}MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{}KiB", bytes / KIB)
    } else {
        format!("{bytes}B")
    }
}

/// Default number of objects per size: many small objects (latency bound),
/// about 1 GiB worth of large ones (throughput bound), so a default run
/// (`4KiB,16MiB`) stays well under two minutes against a local server.
pub fn default_objects(size: u64) -> usize {
    if size <= 64 * KIB {
        2000
    } else {
        // clamp keeps the result in 8..=2000, so the cast cannot truncate
        (GIB / size).clamp(8, 2000) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("12B"), Ok(12));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("4kib"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 * MIB));
        assert_eq!(parse_size(" 16 MiB "), Ok(16 * MIB));
        assert_eq!(parse_size("1GiB"), Ok(GIB));
        assert_eq!(parse_size("5GiB"), Ok(5 * GIB));
        assert_eq!(parse_size("10KB"), Ok(10_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "KiB",
            "-1",
            "1.5MiB",
            "4 TiB",
            "12xyz",
            "6GiB",
            "99999999999999999999",
            "18446744073709551615GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_round_trip() {
        for s in ["4KiB", "16MiB", "1GiB", "100B", "0B", "1536B"] {
            let n = parse_size(s).unwrap();
            assert_eq!(format_size(n), s);
        }
        assert_eq!(format_size(1536 * KIB), "1536KiB");
        assert_eq!(format_size(2048), "2KiB");
    }

    #[test]
    fn default_object_counts() {
        assert_eq!(default_objects(0), 2000);
        assert_eq!(default_objects(4 * KIB), 2000);
        assert_eq!(default_objects(64 * KIB), 2000);
        assert_eq!(default_objects(MIB), 1024);
        assert_eq!(default_objects(16 * MIB), 64);
        assert_eq!(default_objects(GIB), 8);
    }
}
