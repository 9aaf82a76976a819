//! Human units in configuration: durations (`90s`, `1h30m`), sizes (`512M`, `1GiB`), percents.
//!
//! Owns parsing and printing them, and their JSON Schema. Invariant: what `Display` prints
//! parses back to the same value, so `config show` output is itself a valid config.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The longest duration a config may hold: every deadline computed from one (now plus
    /// it, in an `Instant` or a calendar time) stays far inside what those types can hold.
    pub const MAX: HumanDuration = HumanDuration(Duration::from_secs(36_500 * 86_400));

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = Duration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!("`{text}` is not a duration"));
            }
            let number: u64 = rest[..digits].parse().map_err(|_| format!("`{text}` is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let part = match unit {
                "ms" => Duration::from_millis(number),
                "s" => Duration::from_secs(number),
                "m" => Duration::from_secs(number.saturating_mul(60)),
                "h" => Duration::from_secs(number.saturating_mul(3600)),
                "d" => Duration::from_secs(number.saturating_mul(86_400)),
                "w" => Duration::from_secs(number.saturating_mul(604_800)),
                "" => return Err(format!("`{text}` needs a unit (ms, s, m, h, d, w)")),
                other => return Err(format!("unknown unit `{other}` in `{text}` (use ms, s, m, h, d, w)")),
            };
            total = total.saturating_add(part);
        }
        if total > Self::MAX.0 {
            return Err(format!("`{text}` is too long: durations go up to 36500d (100 years)"));
        }
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() != 0 || d.is_zero() {
            return write!(f, "{}ms", d.as_millis());
        }
        let mut secs = d.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d|w))+$",
            "description": "A duration: a number and a unit, repeated: 500ms, 90s, 10m, 1h30m, 26h, 7d, 2w",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        if split == 0 {
            return Err(format!("`{text}` is not a size (examples: 512M, 1G, 64KiB, 1048576)"));
        }
        let number: u64 = t[..split].parse().map_err(|_| format!("`{text}` is too large"))?;
        let mult: u64 = match t[split..].trim() {
            "" | "B" => 1,
            "K" | "KiB" | "k" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            "KB" | "kB" => 1000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{text}` (use K, M, G, T or KiB, MB…)"
                ));
            }
        };
        number
            .checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl ByteSize {
    /// For people: `76.8G`, `512.0M`, `900B` (binary units, one decimal).
    pub fn human(self) -> String {
        let units = [("T", 1u64 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)];
        for (unit, size) in units {
            if self.0 >= size {
                return format!("{:.1}{unit}", self.0 as f64 / size as f64);
            }
        }
        format!("{}B", self.0)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("T", 1u64 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "integer"],
            "pattern": "^[0-9]+ ?(B|K|KiB|M|MiB|G|GiB|T|TiB|KB|kB|MB|GB|TB)?$",
            "description": "A size in bytes: 1048576, 512M, 1G (binary), 100MB (decimal)",
        })
    }
}

/// A share of one CPU, `25%`; over 100% means more than one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub u32);

impl Percent {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        t.strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| *n > 0)
            .map(Percent)
            .ok_or_else(|| format!("`{text}` is not a percentage (example: 25%)"))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> Cow<'static, str> {
        "Percent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": "^[0-9]+%$", "description": "A percentage, e.g. 25%" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for text in ["90s", "10m", "1h30m", "26h", "500ms", "2d"] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(HumanDuration::parse(&d.to_string()).unwrap(), d, "{text}");
        }
        assert_eq!(HumanDuration::parse("1h30m").unwrap().0, Duration::from_secs(5400));
        assert!(HumanDuration::parse("10").unwrap_err().contains("needs a unit"));
        assert!(HumanDuration::parse("5 minutes").is_err());
    }

    #[test]
    fn sizes_parse_binary_and_decimal() {
        assert_eq!(ByteSize::parse("512M").unwrap().0, 512 << 20);
        assert_eq!(ByteSize::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("100MB").unwrap().0, 100_000_000);
        assert_eq!(ByteSize::parse("1G").unwrap().to_string(), "1G");
        assert!(ByteSize::parse("lots").is_err());
    }
}
