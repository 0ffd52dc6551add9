//! Recent request failures of a running workload, carried in its status message.
//!
//! wasmCloud's `WorkloadStatus` has no field for them, and a wasmCloud operator rejects unknown fields,
//! so a Weft host appends them to the message of a `RUNNING` status in one fixed form that
//! [`RequestFailures::parse`] reads back:
//!
//! ```text
//! serving 1 component (hello); 20 of the last 20 requests failed; last error: wasm trap: unreachable
//! ```
//!
//! A wasmCloud operator shows the text as it is; Weft's operator turns it into the Workload's
//! `Healthy` condition.

use std::fmt;

/// How much of the last error's text goes into a status message.
pub const MAX_ERROR_LEN: usize = 300;

const COUNTS_END: &str = " requests failed";
const ERROR_MARK: &str = "; last error: ";
const OF_THE_LAST: &str = " of the last ";

/// `failed` of the last `of` requests failed in the component; the last one with `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFailures {
    /// Failed requests among the last `of`.
    pub failed: u32,
    /// Recent requests counted.
    pub of: u32,
    /// What the last failure was (first line only, at most [`MAX_ERROR_LEN`] bytes).
    pub last_error: String,
}

impl RequestFailures {
    /// Failures with the last error shortened to its first line and [`MAX_ERROR_LEN`] bytes.
    pub fn new(failed: u32, of: u32, last_error: &str) -> Self {
        let first_line = last_error.lines().next().unwrap_or_default().trim();
        let mut end = first_line.len().min(MAX_ERROR_LEN);
        while !first_line.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            failed,
            of,
            last_error: first_line[..end].to_string(),
        }
    }

    /// Whether the workload is failing: at least 3 recent requests and at least half of them failed.
    pub fn is_failing(&self) -> bool {
        self.failed >= 3 && self.failed * 2 >= self.of
    }

    /// `summary` with these failures appended (the form [`RequestFailures::parse`] reads).
    pub fn append_to(&self, summary: &str) -> String {
        if summary.is_empty() {
            self.to_string()
        } else {
            format!("{summary}; {self}")
        }
    }

    /// The failures a status message carries, if any.
    pub fn parse(message: &str) -> Option<Self> {
        let (head, last_error) = message.split_once(ERROR_MARK)?;
        let counts = head.rsplit_once("; ").map_or(head, |(_, counts)| counts);
        let (failed, rest) = counts.split_once(OF_THE_LAST)?;
        let of = rest.strip_suffix(COUNTS_END)?;
        Some(Self {
            failed: failed.parse().ok()?,
            of: of.parse().ok()?,
            last_error: last_error.to_string(),
        })
    }
}

impl fmt::Display for RequestFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{OF_THE_LAST}{}{COUNTS_END}{ERROR_MARK}{}",
            self.failed, self.of, self.last_error
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips() {
        let f = RequestFailures::new(20, 20, "wasm trap: wasm `unreachable` instruction executed");
        let message = f.append_to("serving 1 component (echo; v2)");
        assert_eq!(
            message,
            "serving 1 component (echo; v2); 20 of the last 20 requests failed; last error: wasm trap: wasm \
             `unreachable` instruction executed"
        );
        assert_eq!(RequestFailures::parse(&message), Some(f.clone()));
        assert_eq!(RequestFailures::parse(&f.append_to("")), Some(f));
    }

    #[test]
    fn an_error_text_with_the_markers_in_it_stays_whole() {
        let f = RequestFailures::new(4, 9, "bad; last error: 1 of the last 2 requests failed");
        assert_eq!(RequestFailures::parse(&f.append_to("serving")), Some(f));
    }

    #[test]
    fn messages_without_failures_parse_to_none() {
        for m in [
            "",
            "serving 1 component (hello)",
            "stopping (2 requests in flight)",
            "x of the last 2 requests failed; last error: e",
        ] {
            assert_eq!(RequestFailures::parse(m), None, "{m}");
        }
    }

    #[test]
    fn only_the_first_line_of_a_long_error_is_kept() {
        let long = format!("{}\nwasm backtrace:\n  0: frame", "é".repeat(400));
        let f = RequestFailures::new(1, 1, &long);
        assert!(f.last_error.len() <= MAX_ERROR_LEN);
        assert!(!f.last_error.contains('\n'));
        assert!(f.last_error.chars().all(|c| c == 'é'));
    }

    #[test]
    fn failing_means_at_least_half_of_three_or_more() {
        let failing = |failed, of| RequestFailures::new(failed, of, "e").is_failing();
        assert!(failing(3, 3));
        assert!(failing(32, 64));
        assert!(!failing(2, 2), "too few requests to judge");
        assert!(!failing(31, 64));
        assert!(!failing(1, 64));
    }
}
