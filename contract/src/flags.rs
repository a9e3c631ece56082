//! Bounded parsing of numeric command-line values: durations (`5s`,
//! `500ms`, `2m`) and scale factors (`1.5`).
//!
//! A flag value comes from a person or a script and may be anything: `NaN`,
//! `-1`, `inf`, `1e300`, `99999999999999999999`. Each parser takes the range
//! the flag accepts and refuses everything outside it with a message that
//! states that range, so a bad value is a usage error, never a panic
//! (`Duration::from_secs_f64` panics on overflow) or a silent clamp. Pure
//! functions, no I/O: every binary of the workspace can share them (with
//! clap: `value_parser = |s: &str| parse_scale(s, RANGE)`).

use std::fmt;
use std::time::Duration;

/// The durations a flag accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

/// The scale factors a flag accepts, both ends included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleRange {
    pub min: f64,
    pub max: f64,
}

/// Why a flag value was refused; the message names the accepted range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError(String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

/// Parses a duration: a decimal number followed by `ms`, `s`, `m` or `h`
/// (a bare number means seconds), within `range`.
pub fn parse_duration(text: &str, range: DurationRange) -> Result<Duration, FlagError> {
    let accepted = || {
        format!(
            "a duration from {} to {} (e.g. 5s, 500ms, 2m)",
            format_duration(range.min),
            format_duration(range.max)
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(FlagError(format!(
            "expected {}, got {}",
            accepted(),
            quoted(text)
        )));
    }
    let per_unit = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(FlagError(format!(
                "unknown unit {:?} in {}; expected {}",
                clip(unit),
                quoted(text),
                accepted()
            )))
        }
    };
    let Some(value) = decimal(number) else {
        return Err(FlagError(format!(
            "expected {}, got {}",
            accepted(),
            quoted(text)
        )));
    };
    let seconds = value * per_unit;
    if !(range.min.as_secs_f64()..=range.max.as_secs_f64()).contains(&seconds) {
        return Err(FlagError(format!(
            "{} is out of range; expected {}",
            quoted(text),
            accepted()
        )));
    }
    // In range, so finite and far from Duration's limits.
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a scale factor (a plain decimal number) within `range`.
pub fn parse_scale(text: &str, range: ScaleRange) -> Result<f64, FlagError> {
    let value: Option<f64> = text.trim().parse().ok();
    match value {
        Some(value) if value.is_finite() && value >= range.min && value <= range.max => Ok(value),
        _ => Err(FlagError(format!(
            "expected a number from {} to {}, got {}",
            range.min,
            range.max,
            quoted(text)
        ))),
    }
}

/// A duration the way people write it: `500ms`, `2s`, `1.5s`, `10m`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis < 1000 {
        format!("{millis}ms")
    } else if millis % 60_000 == 0 {
        format!("{}m", millis / 60_000)
    } else {
        let seconds = duration.as_secs_f64();
        let text = format!("{seconds:.3}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        format!("{text}s")
    }
}

/// Digits with at most one decimal point (`5`, `0.5`, `.5`, `5.`); no sign,
/// no exponent. Very long digit strings still parse (to a huge value that
/// the range then refuses).
fn decimal(text: &str) -> Option<f64> {
    let digits = text.chars().filter(char::is_ascii_digit).count();
    let points = text.chars().filter(|c| *c == '.').count();
    if digits == 0 || points > 1 || digits + points != text.len() {
        return None;
    }
    text.parse().ok()
}

fn quoted(text: &str) -> String {
    format!("{:?}", clip(text))
}

/// At most 40 characters of user input in a message.
fn clip(text: &str) -> String {
    if text.chars().count() <= 40 {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(40).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECONDS: DurationRange = DurationRange {
        min: Duration::from_millis(100),
        max: Duration::from_secs(600),
    };
    const SCALE: ScaleRange = ScaleRange {
        min: 0.1,
        max: 100.0,
    };

    #[test]
    fn durations_parse_with_or_without_units() {
        assert_eq!(parse_duration("5s", SECONDS), Ok(Duration::from_secs(5)));
        assert_eq!(
            parse_duration("500ms", SECONDS),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_duration("2m", SECONDS), Ok(Duration::from_secs(120)));
        assert_eq!(
            parse_duration(" 1.5 ", SECONDS),
            Ok(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_duration(".5", SECONDS),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_duration("10m", SECONDS), Ok(Duration::from_secs(600)));
    }

    #[test]
    fn hostile_durations_are_refused_with_the_range() {
        for bad in [
            "",
            "soon",
            "NaN",
            "inf",
            "-1s",
            "1e300",
            "1e3s",
            "99999999999999999999",
            "99999999999999999999h",
            "1.2.3s",
            "0",
            "50ms",
            "11m",
            "5 parsecs",
            "١s",
        ] {
            let err = parse_duration(bad, SECONDS).expect_err(bad).to_string();
            assert!(
                err.contains("from 100ms to 10m"),
                "{bad:?} gave {err:?}, which does not state the range"
            );
        }
    }

    #[test]
    fn hostile_scales_are_refused_with_the_range() {
        assert_eq!(parse_scale("3", SCALE), Ok(3.0));
        assert_eq!(parse_scale("0.1", SCALE), Ok(0.1));
        assert_eq!(parse_scale("100", SCALE), Ok(100.0));
        for bad in [
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "-1",
            "0",
            "0.01",
            "1e300",
            "99999999999999999999",
            "1,5",
            "",
            "x",
        ] {
            let err = parse_scale(bad, SCALE).expect_err(bad).to_string();
            assert!(
                err.contains("from 0.1 to 100"),
                "{bad:?} gave {err:?}, which does not state the range"
            );
        }
    }

    #[test]
    fn long_input_is_clipped_in_messages() {
        let long = "9".repeat(10_000);
        let err = parse_scale(&long, SCALE).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn durations_format_the_way_people_write_them() {
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
    }
}
