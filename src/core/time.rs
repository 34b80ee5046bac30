//! Time as nodemedic records it: UTC with milliseconds, one fixed width, so that timestamps
//! sort as text in every store.

use time::OffsetDateTime;
use time::macros::format_description;

/// A timestamp that sorts as text: UTC, milliseconds, always the same width.
pub fn timestamp(at: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

pub fn now() -> String {
    timestamp(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_as_text() {
        let early = timestamp(time::macros::datetime!(2024-10-04 18:06:36.5 UTC));
        let late = timestamp(time::macros::datetime!(2024-10-04 18:06:36.75 UTC));
        assert_eq!(early, "2024-10-04T18:06:36.500Z");
        assert!(early < late);
    }
}
