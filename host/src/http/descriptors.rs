//! File descriptors: every connection, vendor connection, store file and plugin copy takes one.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (the soft one is often 1024 while the
/// hard one allows far more) and logs the limit in force. Returns it; `None` when unlimited.
pub fn raise_open_file_limit() -> Option<u64> {
    let before = getrlimit(Resource::Nofile);
    let raised = match (before.current, before.maximum) {
        (Some(soft), Some(hard)) if soft < hard => {
            let wanted = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, wanted) {
                Ok(()) => Some(hard),
                Err(error) => {
                    tracing::warn!(soft, hard, %error, "cannot raise the open file limit");
                    Some(soft)
                }
            }
        }
        (soft, _) => soft,
    };
    match raised {
        Some(limit) => tracing::info!(
            open_file_limit = limit,
            previous_soft_limit = before.current,
            "open file limit"
        ),
        None => tracing::info!("open file limit: unlimited"),
    }
    raised
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_open_file_limit();
        let now = getrlimit(Resource::Nofile);
        assert_eq!(limit, now.current);
        assert_eq!(now.current, now.maximum);
    }
}
