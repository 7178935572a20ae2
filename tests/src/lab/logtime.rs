//! Reads the node's own timestamp of its switch from relayed to direct out
//! of its log.
//!
//! The node logs through `tracing`'s default format, one event per line,
//! starting with an RFC 3339 UTC time with microseconds, e.g.
//! `2026-11-23T18:15:00.123456Z  INFO relay_transport::traversal::driver:
//! relayed -> direct peer=... addr=...`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The message the traversal driver logs when it moves a peer to direct.
pub const SWITCH_MESSAGE: &str = "relayed -> direct";

/// When the first line containing `message` was logged.
pub fn first_logged(log: &str, message: &str) -> Option<SystemTime> {
    log.lines()
        .find(|l| l.contains(message))
        .and_then(|l| l.split_whitespace().next())
        .and_then(parse_rfc3339_utc)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac]Z` as a point in time.
pub fn parse_rfc3339_utc(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (t.next()??, t.next()??, t.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let value: u64 = digits.parse().ok()?;
        value * 10u64.pow(9 - u32::try_from(digits.len()).ok()?)
    };
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::new(secs, u32::try_from(nanos).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracing_timestamps() {
        let t = parse_rfc3339_utc("1970-01-02T00:00:01.5Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_millis(),
            86_401_500
        );
        let t = parse_rfc3339_utc("2000-03-01T00:00:00.000001Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_micros(),
            951_868_800_000_001
        );
        assert!(parse_rfc3339_utc("garbage").is_none());
        let log = "2000-03-01T00:00:00Z  INFO x: other\n2000-03-01T00:00:02.25Z  INFO x: relayed -> direct peer=a";
        let t = first_logged(log, SWITCH_MESSAGE).unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_millis(),
            951_868_802_250
        );
    }
}
