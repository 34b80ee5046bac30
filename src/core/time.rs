//! Time as nodemedic records it: one type, [`Timestamp`], whose text is UTC with milliseconds at
//! one fixed width, so that timestamps sort as text in every store. Stores and records hold the
//! text; the code holds the type, and reads stored text back through [`Timestamp::parse`] only.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// A moment, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// Stored text that is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a timestamp: {text:?}")]
pub struct NotATimestamp {
    pub text: String,
}

impl Timestamp {
    pub fn now() -> Self {
        Self(OffsetDateTime::now_utc())
    }

    /// Reads stored text: the form [`Display`](fmt::Display) writes, or any RFC 3339 time
    /// (records written before milliseconds were fixed).
    pub fn parse(text: &str) -> Result<Self, NotATimestamp> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Self::from)
            .map_err(|_| NotATimestamp { text: text.into() })
    }

    /// Before every record nodemedic has written.
    pub const EPOCH: Timestamp = Timestamp(OffsetDateTime::UNIX_EPOCH);

    /// Where a window of `span` ending now starts; a span longer than the calendar (settings
    /// can say anything) starts at [`Timestamp::EPOCH`].
    pub fn window_start(span: Duration) -> Self {
        Self::now()
            .before(span)
            .unwrap_or(Self::EPOCH)
            .max(Self::EPOCH)
    }

    pub fn at(self) -> OffsetDateTime {
        self.0
    }

    /// `span` earlier; `None` before the calendar's start (a span read from settings can be
    /// anything).
    pub fn before(self, span: Duration) -> Option<Self> {
        self.0.checked_sub(span.try_into().ok()?).map(Self)
    }

    /// `span` later; `None` past the calendar's end.
    pub fn after(self, span: Duration) -> Option<Self> {
        self.0.checked_add(span.try_into().ok()?).map(Self)
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn since(self, earlier: Timestamp) -> Duration {
        (self.0 - earlier.0).try_into().unwrap_or(Duration::ZERO)
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(at: OffsetDateTime) -> Self {
        Self(at.to_offset(time::UtcOffset::UTC))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match self.0.format(&format) {
            Ok(text) => f.write_str(&text),
            // Only years beyond four digits fail; they still sort after every real one.
            Err(_) => write!(f, "{}", self.0.unix_timestamp()),
        }
    }
}

impl FromStr for Timestamp {
    type Err = NotATimestamp;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde for a field that was an RFC 3339 `OffsetDateTime` before this type: it keeps that text
/// (no fixed milliseconds), so records and wire bodies stay as they were.
pub mod rfc3339 {
    use serde::{Deserializer, Serializer};

    use super::Timestamp;

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(&at.0, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        time::serde::rfc3339::deserialize(deserializer).map(Timestamp::from)
    }
}

/// The stored text of `at`.
pub fn timestamp(at: OffsetDateTime) -> String {
    Timestamp::from(at).to_string()
}

/// The stored text of this moment.
pub fn now() -> String {
    Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_sort_as_text() {
        let early = timestamp(datetime!(2024-10-04 18:06:36.5 UTC));
        let late = timestamp(datetime!(2024-10-04 18:06:36.75 UTC));
        assert_eq!(early, "2024-10-04T18:06:36.500Z");
        assert!(early < late);
    }

    #[test]
    fn stored_text_reads_back_as_the_same_moment() {
        let at = Timestamp::from(datetime!(2024-10-04 20:06:36.5 +2));
        assert_eq!(at.to_string(), "2024-10-04T18:06:36.500Z");
        assert_eq!(Timestamp::parse(&at.to_string()), Ok(at));
        assert_eq!(
            Timestamp::parse("2024-10-04T18:06:36Z").map(|t| t.to_string()),
            Ok("2024-10-04T18:06:36.000Z".into())
        );
        assert!(Timestamp::parse("yesterday").is_err());
        let json = serde_json::to_string(&at).unwrap();
        assert_eq!(json, "\"2024-10-04T18:06:36.500Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), at);
    }

    #[test]
    fn spans_from_outside_never_overflow() {
        let at = Timestamp::from(datetime!(2024-10-04 18:06:36 UTC));
        assert_eq!(at.before(Duration::MAX), None);
        assert_eq!(at.after(Duration::from_secs(u64::MAX)), None);
        let hour_ago = at.before(Duration::from_secs(3600)).unwrap();
        assert_eq!(at.since(hour_ago), Duration::from_secs(3600));
        assert_eq!(hour_ago.since(at), Duration::ZERO);
    }
}
