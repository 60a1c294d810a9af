//! Durations in the JSON the host answers (`/health`'s limits): whole seconds, as the
//! flags that set them.

use std::time::Duration;

pub fn as_seconds<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_secs())
}
