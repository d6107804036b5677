//! Channels: routing finer than the event type. An event may be published
//! on a few channels (a store, a region, a project of the customer's); a
//! subscription may listen on some. An event reaches a subscription that
//! listens to its type and, when the subscription names channels, is on
//! one of them.

use std::collections::BTreeSet;

use crate::error::Error;

/// The most channels an event or a subscription names.
pub const MAX_CHANNELS: usize = 10;

/// The longest channel name, in bytes.
pub const MAX_CHANNEL_BYTES: usize = 128;

/// Whether an event published on `published` reaches a subscription
/// listening on `listening`: always when it names none, else when they
/// share one.
///
/// ```
/// use std::collections::BTreeSet;
/// use webhooks_core::channels_meet;
///
/// let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
/// assert!(channels_meet(&set(&[]), &set(&["store-eu"])), "a subscription naming none hears every channel");
/// assert!(channels_meet(&set(&["store-eu", "store-us"]), &set(&["store-eu"])));
/// assert!(!channels_meet(&set(&["store-us"]), &set(&["store-eu"])));
/// assert!(!channels_meet(&set(&["store-us"]), &set(&[])), "an event on no channel reaches only those naming none");
/// ```
pub fn channels_meet(listening: &BTreeSet<String>, published: &BTreeSet<String>) -> bool {
    listening.is_empty() || listening.iter().any(|channel| published.contains(channel))
}

/// Checks channel names: at most [`MAX_CHANNELS`], each 1 to
/// [`MAX_CHANNEL_BYTES`] ASCII letters, digits, `_`, `-`, `.` and `:`.
pub(crate) fn check_channels(channels: &BTreeSet<String>) -> Result<(), Error> {
    if channels.len() > MAX_CHANNELS {
        return Err(Error::invalid("channels", format!("{} given, at most {MAX_CHANNELS}", channels.len())));
    }
    for channel in channels {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':');
        if channel.is_empty() || channel.len() > MAX_CHANNEL_BYTES || !channel.bytes().all(allowed) {
            let shown: String = channel.chars().take(MAX_CHANNEL_BYTES).collect();
            return Err(Error::invalid(
                "channels",
                format!(
                    "{shown:?} must be 1 to {MAX_CHANNEL_BYTES} ASCII letters, digits, '_', '-', '.' and ':'"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn names_are_short_plain_and_few() {
        assert!(check_channels(&set(&["store-eu", "region:us.east_1"])).is_ok());
        for bad in ["", "with space", "naïve", &"x".repeat(MAX_CHANNEL_BYTES + 1)] {
            let error = check_channels(&set(&[bad])).unwrap_err();
            assert!(matches!(error, Error::Invalid { field: "channels", .. }), "{bad:?}: {error}");
        }
        let many: BTreeSet<String> = (0..=MAX_CHANNELS).map(|n| format!("c{n}")).collect();
        assert!(check_channels(&many).unwrap_err().to_string().contains("at most"));
    }
}
