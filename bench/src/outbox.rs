//! Following the host's outbox (`<data>/mock-sms-outbox.jsonl`, where the mock connector's
//! messages land): the code each message carried, for workers that verify it.

use std::io::{Read, Seek};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Reads the outbox as it grows until `stop`, and hands each batch of new messages'
/// `(recipient, code)` to `arrived`, then waits `pause` before looking again.
pub fn follow_outbox(
    outbox: PathBuf,
    stop: Arc<AtomicBool>,
    pause: Duration,
    mut arrived: impl FnMut(Vec<(String, String)>),
) {
    let mut position = 0u64;
    let mut pending = String::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(mut file) = std::fs::File::open(&outbox) {
            if file.seek(std::io::SeekFrom::Start(position)).is_ok() {
                let mut chunk = String::new();
                if let Ok(read) = file.read_to_string(&mut chunk) {
                    position += read as u64;
                    pending.push_str(&chunk);
                }
            }
        }
        let mut codes = Vec::new();
        while let Some(newline) = pending.find('\n') {
            let line: String = pending.drain(..=newline).collect();
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                if let (Some(to), Some(code)) =
                    (entry["to"].as_str(), entry["payload"]["code"].as_str())
                {
                    codes.push((to.to_owned(), code.to_owned()));
                }
            }
        }
        if !codes.is_empty() {
            arrived(codes);
        }
        std::thread::sleep(pause);
    }
}
