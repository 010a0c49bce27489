//! Where a download's bytes go on disk.
//!
//! Writing through the page cache is most of what a download costs on a fast link: `curl -o`
//! of 500 MiB on loopback spends about three quarters of its time in `write`, allocating cache
//! pages and copying into them. On a virtual machine whose free memory is handed back to the
//! host (free page reporting), the large folios that big writes get are the memory the host
//! took back, and filling them costs a fault on the host for every page: three times slower
//! still. So whole aligned blocks go straight to the disk (`O_DIRECT`) from a few reused
//! buffers, which costs neither; what cannot (a tail shorter than a block, a resumed file that
//! ends mid-block, a file system that refuses direct writes) goes through the page cache in
//! 64 KiB pieces, which keeps its folios small, with writeback started every 8 MiB.
//!
//! The bytes are copied into a block where they arrive, and only a full block moves on: to a
//! thread that hashes it, then to one that writes it, then back to be filled again. Three
//! stages that overlap (network and copy, SHA-256 at about 2 GB/s, the disk), one hand-over per
//! 2 MiB instead of one per network chunk (about 400 KiB), and the network's buffers are free
//! again as soon as they are copied.

#![allow(clippy::disallowed_methods)] // host/ is where the machine is touched

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Write};
use tokio::sync::mpsc;

/// Offsets, lengths and addresses of direct writes are multiples of this: every logical block
/// size Linux block devices use divides it.
const ALIGN: usize = 4096;

/// The size of one block, and so of one direct write: large enough that the disk's latency per
/// request is small beside its transfer time (500 MiB in 2 MiB direct writes takes 0.27 s on a
/// virtio disk, the same as in 4 MiB ones; in 1 MiB ones, 0.30 s).
const BLOCK: usize = 2 << 20;

/// How many blocks a download uses: one filling, one being written, two to spare.
const POOL: usize = 4;

/// The size of each write through the page cache.
const PIECE: u64 = 64 << 10;

/// How many bytes written through the page cache at a time are handed to writeback, so a later
/// fsync (the k3s binary's, before it is linked into place) finds them written.
const WRITEBACK_STEP: u64 = 8 << 20;

/// The bytes of one download attempt on their way into its file, hashed on the way.
pub(crate) struct Sink {
    /// The block being filled.
    block: Block,
    /// How many blocks exist; up to `POOL` are made as needed.
    made: usize,
    /// Full blocks, to the hashing thread (which hands them to the writing one).
    full: mpsc::UnboundedSender<Block>,
    /// Written blocks, back from the writing thread.
    free: mpsc::UnboundedReceiver<Block>,
    hashing: tokio::task::JoinHandle<Sha256>,
    writing: tokio::task::JoinHandle<io::Result<Written>>,
}

/// What a sink did with the bytes it was given, all of which are in the file.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Their hash, after the bytes the file held before.
    pub hasher: Sha256,
    pub written: Written,
}

/// How the bytes reached the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Straight to the disk (O_DIRECT).
    pub direct: u64,
    /// Through the page cache.
    pub cached: u64,
}

/// A `BLOCK`-sized buffer at an `ALIGN`ed address.
struct Block {
    mem: Vec<u8>,
    at: usize,
    filled: usize,
}

impl Block {
    fn new() -> Block {
        let mem = vec![0u8; BLOCK + ALIGN];
        let at = mem.as_ptr().align_offset(ALIGN);
        Block { mem, at, filled: 0 }
    }

    /// A stand-in that holds no memory, while a full block is handed over.
    fn none() -> Block {
        Block {
            mem: Vec::new(),
            at: 0,
            filled: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.mem[self.at..self.at + self.filled]
    }
}

impl Sink {
    /// Starts the threads that hash and write the bytes of `file`, which holds `start` bytes
    /// (already in `hasher`) and is positioned at its end. Runs inside the tokio runtime (the
    /// threads are its blocking tasks).
    pub(crate) fn start(file: File, start: u64, mut hasher: Sha256) -> Sink {
        let (full, mut full_rx) = mpsc::unbounded_channel::<Block>();
        let (hashed, mut hashed_rx) = mpsc::unbounded_channel::<Block>();
        let (free_tx, free) = mpsc::unbounded_channel();
        // Hashing (about 2 GB/s with SHA-NI) and writing (which waits on the disk) each have a
        // thread, so neither holds up the other or the network.
        let hashing = tokio::task::spawn_blocking(move || {
            while let Some(block) = full_rx.blocking_recv() {
                hasher.update(block.bytes());
                // A writer that stopped has its error; the hash is then not used.
                let _ = hashed.send(block);
            }
            hasher
        });
        let mut out = Writer::new(file, start);
        let writing = tokio::task::spawn_blocking(move || {
            while let Some(mut block) = hashed_rx.blocking_recv() {
                out.write(block.bytes())?;
                block.filled = 0;
                // The receiving side may have stopped already: the block is then dropped.
                let _ = free_tx.send(block);
            }
            Ok(out.counts)
        });
        Sink {
            block: Block::new(),
            made: 1,
            full,
            free,
            hashing,
            writing,
        }
    }

    /// Takes the next bytes of the download; false when the writer has stopped (`finish` says
    /// why).
    pub(crate) async fn push(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() {
            let block = &mut self.block;
            let n = data.len().min(BLOCK - block.filled);
            let at = block.at + block.filled;
            block.mem[at..at + n].copy_from_slice(&data[..n]);
            block.filled += n;
            data = &data[n..];
            if block.filled == BLOCK {
                // The full block goes on before a free one is waited for, so the hashing thread
                // has it at once.
                let full = std::mem::replace(&mut self.block, Block::none());
                if self.full.send(full).is_err() {
                    return false;
                }
                self.block = if self.made < POOL {
                    self.made += 1;
                    Block::new()
                } else {
                    match self.free.recv().await {
                        Some(b) => b,
                        None => return false,
                    }
                };
            }
        }
        true
    }

    /// Hands over what is held back and waits for both threads: the hash of the whole file
    /// and how its bytes were written when every byte pushed is in it, else the writer's error
    /// (what came before it is in the file).
    pub(crate) async fn finish(self) -> io::Result<Finished> {
        if self.block.filled > 0 {
            let _ = self.full.send(self.block);
        }
        drop(self.full);
        let hasher = self
            .hashing
            .await
            .expect("the download's hashing does not panic");
        let written = self
            .writing
            .await
            .expect("the download's writer does not panic")?;
        Ok(Finished { hasher, written })
    }
}

/// The writer's side: the file, written direct while it can be.
struct Writer {
    file: File,
    /// How much of the file is written.
    written: u64,
    /// Where writeback was last started, for bytes written through the page cache.
    kicked: u64,
    direct: bool,
    counts: Written,
}

impl Writer {
    fn new(file: File, start: u64) -> Writer {
        // A resumed file that ends mid-block cannot take aligned writes: it goes through the
        // page cache, as does a file system that refuses O_DIRECT.
        let direct = start % ALIGN as u64 == 0 && set_direct(&file, true).is_ok();
        Writer {
            file,
            written: start,
            kicked: start,
            direct,
            counts: Written {
                direct: 0,
                cached: 0,
            },
        }
    }

    /// Writes `data`, which starts at an `ALIGN`ed address: its whole `ALIGN`ed part direct
    /// while that lasts. The rest (a tail shorter than `ALIGN`, which only the last block has,
    /// or everything after a direct write the file system refused with EINVAL) and all that
    /// follows go through the page cache.
    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.direct {
            return self.write_cached(data);
        }
        let whole = data.len() - data.len() % ALIGN;
        let mut done = 0;
        while done < whole {
            match self.file.write(&data[done..whole]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(Errno::EINVAL as i32) => break,
                Err(e) => return Err(e),
            }
        }
        self.written += done as u64;
        self.counts.direct += done as u64;
        self.kicked = self.written;
        if done < data.len() {
            self.direct = false;
            set_direct(&self.file, false).map_err(io::Error::from)?;
            return self.write_cached(&data[done..]);
        }
        Ok(())
    }

    /// Writes through the page cache, in `PIECE`s that end on `PIECE` boundaries of the file.
    fn write_cached(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = PIECE - self.written % PIECE;
            let n = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
            self.file.write_all(&data[..n])?;
            data = &data[n..];
            self.written += n as u64;
            self.counts.cached += n as u64;
            if self.written - self.kicked >= WRITEBACK_STEP {
                start_writeback(&self.file, self.kicked, self.written - self.kicked);
                self.kicked = self.written;
            }
        }
        Ok(())
    }
}

/// Starts writing a range of an open file back to disk, without waiting: a later fsync of it
/// (the k3s binary's, before it is linked into place) then finds little left to do, because
/// the disk wrote while the network was still sending.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on a descriptor `file` owns; it touches no memory of ours. Its
    // result is advisory: on failure the later fsync simply does all the work.
    unsafe {
        nix::libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            len,
            nix::libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Turns O_DIRECT on or off for an open file (Linux lets `F_SETFL` change it); a file system
/// without direct I/O refuses with EINVAL.
fn set_direct(file: &File, on: bool) -> Result<(), Errno> {
    let flags = OFlag::from_bits_truncate(fcntl(file, FcntlArg::F_GETFL)?);
    let flags = if on {
        flags | OFlag::O_DIRECT
    } else {
        flags - OFlag::O_DIRECT
    };
    fcntl(file, FcntlArg::F_SETFL(flags)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    /// Bytes that differ at every offset, so a misplaced block shows.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u64).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
            .collect()
    }

    /// A file holding `start`, opened for appending as a resumed download opens it.
    fn part(dir: &tempfile::TempDir, start: &[u8]) -> (std::path::PathBuf, File) {
        let path = dir.path().join("part");
        std::fs::write(&path, start).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.seek(io::SeekFrom::End(0)).unwrap();
        (path, file)
    }

    /// Pushes `data` in chunks of the given sizes (cycled) after `start` bytes already there;
    /// the file's bytes, and how the pushed ones were written.
    async fn write(start: &[u8], data: &[u8], chunks: &[usize]) -> (Vec<u8>, Written) {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = part(&dir, start);
        let mut sink = Sink::start(file, start.len() as u64, Sha256::new());
        let mut rest = data;
        for size in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let n = (*size).min(rest.len());
            assert!(sink.push(&rest[..n]).await);
            rest = &rest[n..];
        }
        let done = sink.finish().await.unwrap();
        let hash = done.hasher.finalize();
        assert_eq!(
            hash,
            Sha256::digest(data),
            "the sink hashes what it is given"
        );
        (std::fs::read(&path).unwrap(), done.written)
    }

    #[tokio::test]
    async fn whole_blocks_go_direct_and_every_byte_lands_in_place() {
        let sizes = [0, 1, ALIGN - 1, ALIGN, BLOCK - 1, BLOCK, BLOCK + 1];
        let many = (POOL + 3) * BLOCK + ALIGN + 7; // every block of the pool used twice
        for len in sizes.into_iter().chain([many]) {
            let data = pattern(len, 1);
            let (got, written) = write(&[], &data, &[409_600, 1, 65_536, 3_000_001]).await;
            let whole = (len - len % ALIGN) as u64;
            assert_eq!(
                written,
                Written {
                    direct: whole,
                    cached: len as u64 - whole
                },
                "{len} bytes: all whole 4 KiB blocks went straight to the disk"
            );
            assert_eq!(got.len(), len);
            assert!(
                got == data,
                "{len} bytes written direct come back as written"
            );
        }
    }

    #[tokio::test]
    async fn a_file_resumed_mid_block_is_written_through_the_page_cache() {
        let head = pattern(ALIGN + 5, 2);
        let data = pattern(BLOCK + 3 * PIECE as usize + 11, 3);
        let (got, written) = write(&head, &data, &[100_000, 7]).await;
        assert_eq!(written.direct, 0);
        assert_eq!(written.cached, data.len() as u64);
        assert!(got[..head.len()] == head[..] && got[head.len()..] == data[..]);
    }

    #[tokio::test]
    async fn a_file_resumed_on_a_block_boundary_goes_on_direct() {
        let head = pattern(2 * ALIGN, 4);
        let data = pattern(BLOCK + 12_345, 5);
        let (got, written) = write(&head, &data, &[400_000]).await;
        assert_eq!(written.direct, (BLOCK + 12_288) as u64);
        assert_eq!(written.cached, 57);
        assert!(got[..head.len()] == head[..] && got[head.len()..] == data[..]);
    }

    #[test]
    fn a_refused_direct_write_goes_on_through_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = part(&dir, &[]);
        let mut out = Writer::new(file, 0);
        assert!(out.direct);
        // A buffer one byte off its alignment: the kernel refuses the direct write with EINVAL,
        // as a file system that takes the flag but not the write would.
        let data = pattern(2 * BLOCK + 99, 6);
        let mut block = Block::new();
        block.at += 1;
        block.mem[block.at..block.at + BLOCK].copy_from_slice(&data[..BLOCK]);
        block.filled = BLOCK;
        out.write(block.bytes()).unwrap();
        assert!(
            !out.direct,
            "after EINVAL the writer goes through the page cache"
        );
        out.write(&data[BLOCK..]).unwrap();
        assert_eq!(out.counts.direct, 0);
        assert_eq!(out.counts.cached, data.len() as u64);
        assert!(std::fs::read(&path).unwrap() == data);
    }

    #[tokio::test]
    async fn a_failed_write_stops_the_sink_and_finish_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part");
        std::fs::write(&path, b"").unwrap();
        // Opened for reading only: every write fails with EBADF.
        let file = File::open(&path).unwrap();
        let mut sink = Sink::start(file, 0, Sha256::new());
        let data = pattern(BLOCK, 7);
        let mut pushed = 0;
        while sink.push(&data).await {
            pushed += 1;
            assert!(
                pushed < 100,
                "the sink keeps taking bytes after its writer failed"
            );
        }
        let e = sink.finish().await.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(Errno::EBADF as i32), "{e}");
    }
}
