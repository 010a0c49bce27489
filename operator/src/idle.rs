//! Giving the binary's pages back once the operator is idle.
//!
//! The operator is the whole foreman-box binary (16.6 MiB of code): while the file is in the page
//! cache, the kernel maps the pages around each one the operator touches, so after start-up and a
//! first reconcile about 12.5 MiB of code stays resident (and charged to the pod) although an
//! idle operator runs a few hundred KiB of it. Once no reconcile has run for [`AFTER`], the
//! executable's read-only mappings (code, read-only data) are advised `MADV_PAGEOUT`: the kernel
//! reclaims what only this process maps, and what runs again faults back in. Nothing the operator
//! allocated is touched; a kernel without `MADV_PAGEOUT` (before 5.4) refuses and nothing changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long without a reconcile before the pages are released.
pub const AFTER: Duration = Duration::from_secs(10);
/// How often the quiet is checked.
const TICK: Duration = Duration::from_secs(2);

/// Releases the binary's pages whenever `reconciles` (a count the controller raises after each
/// reconcile) has not moved for [`AFTER`]; once per quiet spell. Runs until dropped.
pub async fn release_when_idle(reconciles: Arc<AtomicU64>) {
    let mut seen = reconciles.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    let mut released = false;
    loop {
        tokio::time::sleep(TICK).await;
        let now = reconciles.load(Ordering::Relaxed);
        if now != seen {
            (seen, quiet_since, released) = (now, Instant::now(), false);
        } else if !released && quiet_since.elapsed() >= AFTER {
            let bytes = release_binary_pages();
            tracing::debug!(bytes, "idle: released the binary's mapped pages");
            released = true;
        }
    }
}

/// Advises `MADV_PAGEOUT` on every read-only mapping of this executable's file; the bytes
/// advised (0 when /proc cannot be read or the kernel refuses).
pub fn release_binary_pages() -> usize {
    #[allow(clippy::disallowed_methods)] // /proc of this process: not a host file
    let (Ok(exe), Ok(maps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/maps"),
    ) else {
        return 0;
    };
    let mut advised = 0;
    for (start, len) in read_only_mappings(&maps, &exe.to_string_lossy()) {
        let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process's executable file, read-only;
        // MADV_PAGEOUT only drops pages that fault back in with the same content.
        let done =
            unsafe { nix::sys::mman::madvise(addr, len, nix::sys::mman::MmapAdvise::MADV_PAGEOUT) };
        if done.is_ok() {
            advised += len;
        }
    }
    advised
}

/// The (start, length) of each mapping of `path` in /proc/PID/maps text that is not writable:
/// `55d0c2a00000-55d0c3600000 r-xp 00200000 fd:01 1234 /usr/local/bin/foreman-box`.
fn read_only_mappings(maps: &str, path: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            let file = fields.nth(3)?;
            if file != path || perms.contains('w') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end - start))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_read_only_mappings_are_chosen() {
        let maps = "\
55d0c2800000-55d0c2a00000 r--p 00000000 fd:01 7 /bin/op
55d0c2a00000-55d0c3600000 r-xp 00200000 fd:01 7 /bin/op
55d0c3600000-55d0c3700000 rw-p 00e00000 fd:01 7 /bin/op
55d0c3700000-55d0c3800000 r--p 00000000 fd:01 8 /bin/op-other
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00102000 r-xp 00000000 00:00 0 [vdso]
";
        assert_eq!(
            read_only_mappings(maps, "/bin/op"),
            [(0x55d0c2800000, 0x200000), (0x55d0c2a00000, 0xc00000)]
        );
    }

    #[test]
    fn released_pages_leave_this_process_resident_set() {
        fn rss_file_kib() -> u64 {
            #[allow(clippy::disallowed_methods)] // /proc of this process
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap()
        }
        let before = rss_file_kib();
        let advised = release_binary_pages();
        let after = rss_file_kib();
        assert!(advised > 0, "no mapping of the test binary was advised");
        assert!(
            after < before,
            "RssFile {before} KiB before, {after} KiB after releasing"
        );
    }
}
